-- Reserved for the sessions change that takes number 9; nothing of its own.
SELECT 1;

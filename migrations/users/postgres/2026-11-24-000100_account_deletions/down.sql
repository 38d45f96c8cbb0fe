DROP TABLE users_deleted;

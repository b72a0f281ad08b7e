DROP TABLE IF EXISTS {{.Table}}_claims;

-- A schema shaped like a bank's, with every column type and object MariaDB
-- has, each at its edge values. Loaded on legacy by the fidelity suite
-- (tests/integration/lab_fidelity.rs); the oracle compares every value and
-- every object of `zoo` on each target with legacy's.
SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';
SET SESSION time_zone = '+00:00';
SET NAMES utf8mb4;
CREATE DATABASE zoo CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE zoo;

CREATE TABLE numbers (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED, zf INT(8) UNSIGNED ZEROFILL,
  d65 DECIMAL(65,30), money DECIMAL(15,2) NOT NULL DEFAULT 0.00, du DECIMAL(10,4) UNSIGNED,
  f FLOAT, f73 FLOAT(7,3), db DOUBLE, d206 DOUBLE(20,6),
  b1 BIT(1), b64 BIT(64), flag BOOLEAN, yr YEAR,
  CONSTRAINT chk_money CHECK (money > -10000000000000)
) ENGINE=InnoDB AUTO_INCREMENT=100 COMMENT='every number, at its edges';
INSERT INTO numbers VALUES
 (NULL, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0,
  '-99999999999999999999999999999999999.999999999999999999999999999999', -9999999999999.99, 0,
  16777216, -9999.999, 1.7976931348623157e308, -99999999999999.999999,
  b'0', b'0', 0, 1901),
 (NULL, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
  9223372036854775807, 18446744073709551615, 4294967295,
  '99999999999999999999999999999999999.999999999999999999999999999999', 9999999999999.99, 999999.9999,
  3.4028234e38, 9999.999, 4.9e-324, 99999999999999.999999,
  b'1', b'1111111111111111111111111111111111111111111111111111111111111111', 1, 2155),
 (NULL, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1,
  '0.000000000000000000000000000001', 0.01, 0.0001,
  -1.17549435e-38, 0.001, 2.2250738585072014e-308, 0.000001,
  b'1', b'1000000000000000000000000000000000000000000000000000000000000001', 1, 0),
 (NULL, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0.1, 0.10, 0.1,
  0.1, 0.1, 0.1, 0.1, b'0', b'101', 0, 2000),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL,
  1.4e-45, NULL, -0.30000000000000004, NULL, NULL, NULL, NULL, NULL);
-- A deleted tail: the counter stays above the largest id.
INSERT INTO numbers (money) VALUES (1), (2);
DELETE FROM numbers WHERE money IN (1, 2);

CREATE TABLE times (
  id INT NOT NULL PRIMARY KEY,
  d DATE, dt DATETIME, dt6 DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL,
  ts0 TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  t TIME, t6 TIME(6)
) ENGINE=InnoDB;
INSERT INTO times VALUES
 (1, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000', NULL, '2001-02-03 04:05:06', '-838:59:59', '-838:59:59.000000'),
 (2, '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '1970-01-01 00:00:01', '838:59:59', '838:59:59.000000'),
 (3, '9999-12-31', '9999-12-31 23:59:59', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '2038-01-19 03:14:07', '00:00:00', '-00:00:00.000001'),
 (4, '2024-02-29', '2024-02-29 12:00:00', '2024-02-29 12:00:00.500000', '2024-02-29 12:00:00.123456', '2024-02-29 12:00:00', '12:34:56', '12:34:56.789012');

CREATE TABLE strings (
  id INT NOT NULL PRIMARY KEY,
  c CHAR(10), vc VARCHAR(300), tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT,
  l1 VARCHAR(50) CHARACTER SET latin1 COLLATE latin1_swedish_ci,
  u3 VARCHAR(50) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci COMMENT 'old "utf8"',
  cs VARCHAR(50) COLLATE utf8mb4_bin,
  bn BINARY(8), vb VARBINARY(64), tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB,
  e ENUM('a','b','c d',''), s SET('x','y','z'),
  j JSON,
  u UUID, i6 INET6, i4 INET4, packed TEXT COMPRESSED
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC;
INSERT INTO strings VALUES
 (1, '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', '{}', '6ccd780c-baba-1026-9564-5b8c656024db', '::', '127.0.0.1', 'x'),
 (2, 'trail   ', 'tab\there\nnew\\line\r\0nul', 'ünïcödé', '₹ 100 😀', REPEAT('m', 70000), REPEAT('λ', 100000),
  'é à ç', 'ℵ', 'CaSe', X'0001020300FFFE00', X'00', X'FF00', X'5C4E0A09', REPEAT(X'00FF', 600000), REPEAT(X'DEADBEEF', 600000),
  'c d', 'x,z', '{"b": 1, "a": [1.5, "two", null, true], "nested": {"k": "v\\"q"}}',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '255.255.255.255', REPEAT('squeeze ', 5000)),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 'N', '\\N', 'NULL', '''quoted''', '"dq"', '`bt`', '\\', '%_', 'a\tb', X'4E554C4C', X'5C4E', X'0A', X'09', X'0D', X'5C', '', '', '[1e300, -0.0, 12345678901234567890]',
  '00000000-0000-0000-0000-000000000000', '::ffff:1.2.3.4', '0.0.0.0', '');

CREATE TABLE places (
  id INT NOT NULL PRIMARY KEY,
  g GEOMETRY NOT NULL, p POINT, ls LINESTRING, poly POLYGON, mp MULTIPOINT, gc GEOMETRYCOLLECTION,
  mls MULTILINESTRING, mpoly MULTIPOLYGON,
  SPATIAL KEY sp_g (g)
) ENGINE=InnoDB;
INSERT INTO places VALUES
 (1, ST_GeomFromText('POINT(77.5946 12.9716)'), ST_GeomFromText('POINT(-180 -90)'),
  ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)'), ST_GeomFromText('POLYGON((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 2 1, 2 2, 1 1))'),
  ST_GeomFromText('MULTIPOINT(1 1, 2 2)'), ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1), LINESTRING(0 0, 1 1))'),
  ST_GeomFromText('MULTILINESTRING((0 0, 1 1), (2 2, 3 3))'), ST_GeomFromText('MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))')),
 (2, ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 0))'), NULL, NULL, NULL, NULL, NULL, NULL, NULL);

CREATE TABLE derived (
  id INT NOT NULL PRIMARY KEY,
  amount DECIMAL(15,2) NOT NULL,
  paise BIGINT AS (amount * 100) VIRTUAL,
  tax DECIMAL(15,2) AS (amount * 0.18) PERSISTENT,
  note VARCHAR(20) INVISIBLE DEFAULT 'hidden',
  KEY k_paise (paise),
  KEY k_tax (tax)
) ENGINE=InnoDB;
INSERT INTO derived (id, amount) VALUES (1, 10.00), (2, 99999.99);
INSERT INTO derived (id, amount, note) VALUES (3, 0.01, 'shown');

CREATE TABLE indexed (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(200), body TEXT, score INT, code VARCHAR(30),
  KEY k_prefix (name(10)),
  KEY k_desc (score DESC, id),
  FULLTEXT KEY ft_body (body),
  UNIQUE KEY uk_code (code)
) ENGINE=InnoDB ROW_FORMAT=COMPACT COMMENT='prefix, descending, full-text and nullable unique';
INSERT INTO indexed VALUES (1, 'alpha beta', 'the quick brown fox', 10, NULL), (2, 'alpha', 'lazy dog', 20, NULL), (3, 'b', 'jumps', -1, 'X1');

CREATE TABLE accounts (
  id INT NOT NULL PRIMARY KEY,
  parent_id INT NULL,
  owner VARCHAR(20) NOT NULL,
  KEY k_owner (owner) IGNORED,
  CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES accounts (id) ON DELETE SET NULL
) ENGINE=InnoDB;
CREATE TABLE ledger (
  id BIGINT NOT NULL PRIMARY KEY,
  account_id INT NOT NULL,
  amount DECIMAL(15,2) NOT NULL,
  KEY k_account (account_id),
  CONSTRAINT fk_ledger_account FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE ON UPDATE CASCADE
) ENGINE=InnoDB;
INSERT INTO accounts VALUES (1, NULL, 'bank'), (2, 1, 'branch'), (3, 2, 'teller');
INSERT INTO ledger VALUES (1, 3, 100.00), (2, 3, -100.00), (3, 2, 0.01);
CREATE TABLE a_side (id INT NOT NULL PRIMARY KEY, b_id INT NULL, KEY k_b (b_id)) ENGINE=InnoDB;
CREATE TABLE b_side (id INT NOT NULL PRIMARY KEY, a_id INT NULL, KEY k_a (a_id),
  CONSTRAINT fk_b_a FOREIGN KEY (a_id) REFERENCES a_side (id)) ENGINE=InnoDB;
ALTER TABLE a_side ADD CONSTRAINT fk_a_b FOREIGN KEY (b_id) REFERENCES b_side (id);
INSERT INTO a_side VALUES (1, NULL);
INSERT INTO b_side VALUES (1, 1);
UPDATE a_side SET b_id = 1 WHERE id = 1;

CREATE TABLE part_range (
  id INT NOT NULL, created DATE NOT NULL, amount DECIMAL(15,2),
  PRIMARY KEY (id, created), KEY k_amount (amount)
) ENGINE=InnoDB
PARTITION BY RANGE (YEAR(created)) (
  PARTITION p2020 VALUES LESS THAN (2021),
  PARTITION p2021 VALUES LESS THAN (2022) COMMENT 'last year',
  PARTITION pmax VALUES LESS THAN MAXVALUE);
INSERT INTO part_range VALUES (1, '2020-05-01', 1.00), (2, '2021-05-01', 2.00), (3, '2030-01-01', 3.00);
CREATE TABLE part_list (id INT NOT NULL, region INT NOT NULL, PRIMARY KEY (id, region)) ENGINE=InnoDB
PARTITION BY LIST (region) (PARTITION north VALUES IN (1, 2), PARTITION south VALUES IN (3, 4));
INSERT INTO part_list VALUES (1, 1), (2, 3), (3, 4);
CREATE TABLE part_hash (id INT NOT NULL PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB PARTITION BY HASH (id) PARTITIONS 4;
INSERT INTO part_hash VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e');
CREATE TABLE part_key (id INT NOT NULL PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB PARTITION BY KEY (id) PARTITIONS 3;
INSERT INTO part_key VALUES (1, 'a'), (2, 'b'), (3, 'c');
CREATE TABLE part_sub (id INT NOT NULL, created DATE NOT NULL, PRIMARY KEY (id, created)) ENGINE=InnoDB
PARTITION BY RANGE (YEAR(created)) SUBPARTITION BY HASH (id) SUBPARTITIONS 2 (
  PARTITION old VALUES LESS THAN (2021), PARTITION new VALUES LESS THAN MAXVALUE);
INSERT INTO part_sub VALUES (1, '2020-01-01'), (2, '2022-01-01'), (3, '2023-01-01');

CREATE TABLE keyless (a INT, b VARCHAR(10)) ENGINE=InnoDB;
CREATE TABLE compressed (id INT NOT NULL PRIMARY KEY, created_on DATE DEFAULT (CURRENT_DATE), body TEXT)
  ENGINE=InnoDB ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8;
INSERT INTO compressed VALUES (1, '2020-02-02', REPEAT('compress me ', 1000)), (2, DEFAULT, NULL);
INSERT INTO keyless VALUES (1, 'x'), (1, 'x'), (NULL, NULL), (2, '');
CREATE TABLE nullable_unique (a INT NULL, b VARCHAR(10), UNIQUE KEY uk_a (a)) ENGINE=InnoDB;
INSERT INTO nullable_unique VALUES (NULL, 'n1'), (NULL, 'n2'), (1, 'one');
CREATE TABLE `order` (`select` INT NOT NULL PRIMARY KEY, `from` VARCHAR(10), `naïve ✓` VARCHAR(10), `back``tick` INT) ENGINE=InnoDB;
INSERT INTO `order` VALUES (1, 'where', 'ok ✓', 7);

CREATE TABLE ticks (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, server_id INT UNSIGNED NOT NULL) ENGINE=InnoDB;
CREATE TABLE audit (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40) NOT NULL, amount DECIMAL(15,2)) ENGINE=InnoDB;

CREATE SEQUENCE invoice_numbers START WITH 1000 INCREMENT BY 5 CACHE 10;
SELECT NEXTVAL(invoice_numbers), NEXTVAL(invoice_numbers);
CREATE TABLE audited (id INT NOT NULL PRIMARY KEY, balance DECIMAL(15,2) NOT NULL) ENGINE=InnoDB WITH SYSTEM VERSIONING;
INSERT INTO audited VALUES (1, 10.00), (2, 20.00);
UPDATE audited SET balance = 15.00 WHERE id = 1;
DELETE FROM audited WHERE id = 2;

-- Objects, created in utf8mb3 as an older application would have.
SET NAMES utf8mb3;
SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION,ANSI_QUOTES';
DELIMITER ;;
CREATE DEFINER = 'zoo_owner'@'%' FUNCTION paise(amount DECIMAL(15,2)) RETURNS BIGINT DETERMINISTIC SQL SECURITY DEFINER
  RETURN amount * 100 ;;
CREATE DEFINER = 'zoo_owner'@'%' PROCEDURE transfer(IN from_id INT, IN to_id INT, IN amount DECIMAL(15,2)) SQL SECURITY INVOKER
BEGIN
  INSERT INTO ledger (id, account_id, amount) SELECT COALESCE(MAX(id), 0) + 1, from_id, -amount FROM ledger;
  INSERT INTO ledger (id, account_id, amount) SELECT COALESCE(MAX(id), 0) + 1, to_id, amount FROM ledger;
END ;;
CREATE DEFINER = 'zoo_owner'@'%' TRIGGER ledger_audit AFTER INSERT ON ledger FOR EACH ROW
  INSERT INTO audit (what, amount) VALUES ('ledger é', NEW.amount) ;;
CREATE DEFINER = 'zoo_owner'@'%' TRIGGER ledger_audit_second AFTER INSERT ON ledger FOR EACH ROW FOLLOWS ledger_audit
  INSERT INTO audit (what, amount) VALUES ('second', NEW.amount * 2) ;;
CREATE DEFINER = 'zoo_owner'@'%' TRIGGER ledger_audit_first AFTER INSERT ON ledger FOR EACH ROW PRECEDES ledger_audit
  INSERT INTO audit (what, amount) VALUES ('first', NULL) ;;
CREATE DEFINER = 'zoo_owner'@'%' TRIGGER derived_check BEFORE INSERT ON derived FOR EACH ROW
  SET NEW.note = IF(NEW.note = 'hidden', 'trigger', NEW.note) ;;
CREATE DEFINER = 'zoo_owner'@'%' EVENT tick ON SCHEDULE EVERY 1 SECOND ON COMPLETION PRESERVE ENABLE COMMENT 'fires on the primary only'
  DO INSERT INTO ticks (server_id) VALUES (@@server_id) ;;
CREATE DEFINER = 'zoo_owner'@'%' EVENT monthly_close ON SCHEDULE EVERY 1 MONTH STARTS '2030-01-01 00:00:00' ON COMPLETION NOT PRESERVE DISABLE
  DO DELETE FROM audit WHERE id < 0 ;;
DELIMITER ;
CREATE DEFINER = 'zoo_owner'@'%' SQL SECURITY DEFINER VIEW ledger_totals AS
  SELECT account_id, SUM(amount) AS total, COUNT(*) AS n FROM ledger GROUP BY account_id;
CREATE DEFINER = 'zoo_owner'@'%' SQL SECURITY INVOKER VIEW big_accounts AS
  SELECT t.account_id, a.owner, t.total FROM ledger_totals t JOIN accounts a ON a.id = t.account_id WHERE t.total > 0;
CREATE DEFINER = 'zoo_owner'@'%' VIEW positive_ledger AS
  SELECT id, account_id, amount FROM ledger WHERE amount > 0 WITH CASCADED CHECK OPTION;
SET NAMES utf8mb4;

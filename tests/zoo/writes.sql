-- Writes on legacy after the snapshot, on both flavors: they must reach every
-- target through replication, into every kind of table, with the source's
-- triggers' and events' effects arriving once.
SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';
SET SESSION time_zone = '+00:00';
SET NAMES utf8mb4;
USE zoo;
INSERT INTO numbers (money, f, db, b64) VALUES (5.55, 3.4028234e38, 0.1, b'1010');
UPDATE numbers SET f = 1.17549435e-38, d65 = -0.000000000000000000000000000001 WHERE id = 103;
INSERT INTO times (id, d, dt6, t6) VALUES (5, '0000-00-00', '2025-01-01 00:00:00.000001', '-838:59:59');
INSERT INTO strings (id, vc, lb, j) VALUES (5, 'after\tsnapshot', REPEAT(X'00', 100000), '{"after": true}');
UPDATE strings SET mt = CONCAT(mt, 'é') WHERE id = 2;
INSERT INTO derived (id, amount) VALUES (4, 12.34);
UPDATE derived SET amount = amount + 1 WHERE id = 1;
INSERT INTO accounts VALUES (4, 1, 'new');
DELETE FROM accounts WHERE id = 2;
CALL transfer(1, 4, 25.00);
UPDATE indexed SET code = 'X2', score = score - 1 WHERE id = 2;
INSERT INTO part_range VALUES (4, '2021-12-31', 4.00), (5, '2099-01-01', NULL);
UPDATE part_range SET created = '2020-01-01' WHERE id = 3;
INSERT INTO part_list VALUES (4, 2);
INSERT INTO part_hash VALUES (6, 'f');
INSERT INTO part_sub VALUES (4, '2020-06-01');
INSERT INTO keyless VALUES (3, 'after');
DELETE FROM keyless WHERE a = 2;
INSERT INTO nullable_unique VALUES (NULL, 'n3');
INSERT INTO `order` VALUES (2, 'join', 'ünï', NULL);

-- MariaDB's own objects after the snapshot: a sequence advanced, a
-- system-versioned row changed (a new history row).
USE zoo;
SELECT NEXTVAL(invoice_numbers);
UPDATE audited SET balance = balance + 1 WHERE id = 1;
INSERT INTO audited VALUES (3, 30.00);

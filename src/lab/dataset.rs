//! The `refunds` dataset: shaped like a UPI refund system's tables, with the
//! column types that make row comparison hard (exact DECIMAL money, NULL next
//! to '', DOUBLE, unicode, JSON, binary), generated deterministically.

/// Schema statements, in order.
pub const SCHEMA: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS refunds CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS refunds.transactions (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
        txn_ref CHAR(22) NOT NULL,
        payer_vpa VARCHAR(64) NOT NULL,
        payee_vpa VARCHAR(64) NOT NULL,
        amount DECIMAL(15,2) NOT NULL,
        refund_amount DECIMAL(15,2) NULL,
        currency CHAR(3) NOT NULL DEFAULT 'INR',
        status ENUM('INITIATED','SUCCESS','FAILED','REFUNDED','PARTIALLY_REFUNDED') NOT NULL,
        fx_rate DOUBLE NOT NULL,
        remarks VARCHAR(255) NULL,
        metadata JSON NULL,
        created_at DATETIME(6) NOT NULL,
        updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
        PRIMARY KEY (id),
        UNIQUE KEY uk_txn_ref (txn_ref),
        KEY idx_created_at (created_at)
    ) ENGINE=InnoDB",
    // Composite key, as in the source system's participants table.
    "CREATE TABLE IF NOT EXISTS refunds.txn_participants (
        txn_id BIGINT UNSIGNED NOT NULL,
        participant_seq SMALLINT UNSIGNED NOT NULL,
        role ENUM('PAYER','PAYEE','PSP','BANK') NOT NULL,
        vpa VARCHAR(64) NOT NULL,
        bank_code CHAR(4) NOT NULL,
        amount DECIMAL(15,2) NOT NULL,
        PRIMARY KEY (txn_id, participant_seq),
        KEY idx_txn_amount (txn_id, amount)
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS refunds.ledger_entries (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
        txn_id BIGINT UNSIGNED NOT NULL,
        debit DECIMAL(18,4) NULL,
        credit DECIMAL(18,4) NULL,
        memo VARCHAR(120) NULL,
        entry_hash BINARY(16) NOT NULL,
        posted_at DATETIME(3) NOT NULL,
        PRIMARY KEY (id),
        KEY idx_txn_id (txn_id)
    ) ENGINE=InnoDB",
    // No primary key, like many old audit tables.
    "CREATE TABLE IF NOT EXISTS refunds.refund_audit_trail (
        txn_id BIGINT UNSIGNED NOT NULL,
        event VARCHAR(32) NOT NULL,
        actor VARCHAR(64) NULL,
        recorded_at DATETIME(6) NOT NULL
    ) ENGINE=InnoDB",
    "CREATE OR REPLACE VIEW refunds.daily_refund_totals AS
        SELECT DATE(created_at) AS day, COUNT(*) AS txns, SUM(refund_amount) AS refunded
        FROM refunds.transactions GROUP BY DATE(created_at)",
    "CREATE OR REPLACE FUNCTION refunds.to_paise(amount DECIMAL(15,2)) RETURNS BIGINT
        DETERMINISTIC RETURN CAST(amount * 100 AS SIGNED)",
];

/// Rows per INSERT statement.
const BATCH: u64 = 1_000;

const REMARKS: &[Option<&str>] = &[
    Some("refund for order"),
    Some("रिफंड प्रक्रिया में"),
    Some("退款已处理"),
    Some("Rückerstattung ✓"),
    Some("💸 refund settled"),
    Some("naïve café — ₹ returned"),
    Some(""),
    None,
];

const BANKS: &[&str] = &["PYTM", "HDFC", "ICIC", "SBIN", "AXIS", "YESB"];
const STATUSES: &[&str] = &[
    "INITIATED",
    "SUCCESS",
    "FAILED",
    "REFUNDED",
    "PARTIALLY_REFUNDED",
];

/// SplitMix64: tiny, fast and stable across versions, so the dataset never changes.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sql_text(value: &str) -> String {
    crate::mysql::quote(value)
}

fn optional_text(value: Option<&str>) -> String {
    value.map_or_else(|| "NULL".to_string(), sql_text)
}

/// 2026-01-01 plus `seconds`, formatted as a DATETIME literal body.
fn timestamp(seconds: u64, micros: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    // Stay inside 2026 by wrapping the day of year; months are approximated as 28 days.
    let month = (days / 28) % 12 + 1;
    let day = days % 28 + 1;
    format!(
        "2026-{month:02}-{day:02} {:02}:{:02}:{:02}.{micros:06}",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

/// INSERT statements for `transactions` rows `first..=last` (ids are explicit).
pub fn batches(rows: u64) -> impl Iterator<Item = String> {
    let batch_count = rows.div_ceil(BATCH);
    (0..batch_count).flat_map(move |batch| {
        let first = batch * BATCH + 1;
        let last = ((batch + 1) * BATCH).min(rows);
        batch_statements(first, last)
    })
}

fn batch_statements(first: u64, last: u64) -> Vec<String> {
    let mut transactions = Vec::new();
    let mut participants = Vec::new();
    let mut ledger = Vec::new();
    let mut audit = Vec::new();
    for id in first..=last {
        let mut rng = SplitMix(id.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let paise = 100 + rng.below(5_000_000);
        let amount = format!("{}.{:02}", paise / 100, paise % 100);
        let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
        let refund = match status {
            "REFUNDED" => amount.clone(),
            "PARTIALLY_REFUNDED" => {
                let part = paise / 3;
                format!("{}.{:02}", part / 100, part % 100)
            }
            _ => "NULL".to_string(),
        };
        // Every seventh rate is exactly 0.1 + 0.2, the classic non-representable sum.
        let fx_rate = if id % 7 == 0 {
            0.1_f64 + 0.2_f64
        } else {
            1.0 + (rng.below(1_000_000) as f64) / 1_000_003.0
        };
        let remarks = REMARKS[rng.below(REMARKS.len() as u64) as usize];
        let metadata = if id % 5 == 0 {
            "NULL".to_string()
        } else {
            sql_text(&format!(
                r#"{{"channel": "UPI", "device": "{}", "risk": {}, "tags": ["refund", "p2m"], "attempt": {}}}"#,
                ["android", "ios", "web"][rng.below(3) as usize],
                rng.below(100) as f64 / 100.0,
                rng.below(3) + 1
            ))
        };
        let created = timestamp(id * 37, rng.below(1_000_000));
        let payer = format!("user{}@paytm", rng.below(90_000) + 10_000);
        let payee = format!(
            "merchant{}@{}",
            rng.below(9_000) + 1_000,
            ["hdfc", "icici", "sbi"][rng.below(3) as usize]
        );
        transactions.push(format!(
            "({id}, 'UPI{id:019}', {}, {}, {amount}, {refund}, 'INR', '{status}', {fx_rate:?}, {}, {metadata}, '{created}', '{created}')",
            sql_text(&payer),
            sql_text(&payee),
            optional_text(remarks),
        ));
        let payer_bank = BANKS[rng.below(BANKS.len() as u64) as usize];
        let payee_bank = BANKS[rng.below(BANKS.len() as u64) as usize];
        participants.push(format!(
            "({id}, 1, 'PAYER', {}, '{payer_bank}', {amount})",
            sql_text(&payer)
        ));
        participants.push(format!(
            "({id}, 2, 'PAYEE', {}, '{payee_bank}', {amount})",
            sql_text(&payee)
        ));
        let memo = match rng.below(3) {
            0 => "NULL".to_string(),
            1 => "''".to_string(),
            _ => sql_text(&format!("settlement batch {}", id / 100)),
        };
        let posted = timestamp(id * 37 + 5, 0);
        let posted = &posted[..posted.len() - 3];
        let hash_a = rng.next();
        let hash_b = rng.next();
        ledger.push(format!(
            "({}, {id}, {amount}, NULL, {memo}, X'{hash_a:016x}{hash_b:016x}', '{posted}')",
            id * 2 - 1
        ));
        ledger.push(format!(
            "({}, {id}, NULL, {amount}, {memo}, X'{hash_b:016x}{hash_a:016x}', '{posted}')",
            id * 2
        ));
        let actor = if id % 4 == 0 {
            "NULL".to_string()
        } else {
            sql_text(&format!("ops{}", id % 17))
        };
        audit.push(format!("({id}, 'CREATED', {actor}, '{created}')"));
    }
    vec![
        format!(
            "INSERT INTO refunds.transactions (id, txn_ref, payer_vpa, payee_vpa, amount, refund_amount, currency, status, fx_rate, remarks, metadata, created_at, updated_at) VALUES {}",
            transactions.join(",")
        ),
        format!(
            "INSERT INTO refunds.txn_participants (txn_id, participant_seq, role, vpa, bank_code, amount) VALUES {}",
            participants.join(",")
        ),
        format!(
            "INSERT INTO refunds.ledger_entries (id, txn_id, debit, credit, memo, entry_hash, posted_at) VALUES {}",
            ledger.join(",")
        ),
        format!(
            "INSERT INTO refunds.refund_audit_trail (txn_id, event, actor, recorded_at) VALUES {}",
            audit.join(",")
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_row_once_and_are_deterministic() {
        let first: Vec<String> = batches(2_500).collect();
        let second: Vec<String> = batches(2_500).collect();
        assert_eq!(first, second);
        // Three batches of four tables each.
        assert_eq!(first.len(), 12);
        assert!(first[0].contains("(1, 'UPI0000000000000000001'"));
        assert!(first[8].contains("(2500, 'UPI0000000000000002500'"));
        assert!(
            !first
                .iter()
                .any(|sql| sql.contains("'UPI0000000000000002501'"))
        );
    }

    #[test]
    fn dataset_has_the_hard_cases() {
        let sql: String = batches(100).collect::<Vec<_>>().join("\n");
        assert!(sql.contains("0.30000000000000004"), "0.1 + 0.2 rate");
        assert!(
            sql.contains("NULL, '',") || sql.contains(", '', X'"),
            "empty memo"
        );
        assert!(
            sql.contains("退款已处理") || sql.contains("रिफंड"),
            "unicode"
        );
        assert!(sql.contains(r#""channel": "UPI""#), "json");
    }

    #[test]
    fn timestamps_are_valid_datetimes() {
        for seconds in [0, 86_399, 86_400 * 400, 37 * 1_000_000] {
            let text = timestamp(seconds, 123);
            let (date, time) = text.split_once(' ').unwrap();
            let parts: Vec<u32> = date.split('-').map(|p| p.parse().unwrap()).collect();
            assert!(
                (1..=12).contains(&parts[1]) && (1..=28).contains(&parts[2]),
                "{text}"
            );
            assert!(time.starts_with(|c: char| c.is_ascii_digit()), "{text}");
        }
    }
}

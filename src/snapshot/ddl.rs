//! The schema as the source prints it, reshaped for a fast load (secondary
//! indexes and foreign keys added after the data), and the source's stored
//! objects with the session settings each was created under.

use crate::mysql::{Flavor, MysqlError, Session, quote};
use crate::tables::canonical::{ident, table_name};
use crate::tables::schema::TableSpec;

/// A table's `CREATE TABLE` without its secondary indexes and foreign keys,
/// and the statement that adds them once the rows are in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableDdl {
    /// The database the table lives in.
    pub schema: String,
    #[serde(default)]
    pub name: String,
    pub create: String,
    /// `ALTER TABLE … ADD KEY …, ADD CONSTRAINT … FOREIGN KEY …` (`None`: nothing to add).
    pub add_indexes: Option<String>,
}

fn is_secondary_index(line: &str) -> bool {
    let line = line.trim_start();
    [
        "KEY ",
        "UNIQUE KEY ",
        "FULLTEXT KEY ",
        "SPATIAL KEY ",
        "INDEX ",
        "UNIQUE INDEX ",
    ]
    .iter()
    .any(|prefix| line.starts_with(prefix))
}

fn is_foreign_key(line: &str) -> bool {
    line.starts_with("CONSTRAINT ") && line.contains(" FOREIGN KEY ")
}

/// Split `SHOW CREATE TABLE` output. The primary key stays (InnoDB clusters the
/// rows on it); every other index is added afterwards in one `ALTER TABLE`, in
/// the source's order, then the foreign keys, which then find the indexes they
/// use under their own names (added first, InnoDB would create one of its own).
/// The definition ends at the first line that starts with `)`: the table
/// options and any partitioning follow it, over as many lines as they take.
pub fn split_table(table: &TableSpec, create: &str) -> TableDdl {
    let lines: Vec<&str> = create.lines().collect();
    let unchanged = || TableDdl {
        schema: table.schema.clone(),
        name: table.name.clone(),
        create: create.to_string(),
        add_indexes: None,
    };
    let Some(end) = lines.iter().position(|line| line.starts_with(')')) else {
        return unchanged();
    };
    if end < 2 {
        return unchanged();
    }
    let (head, body, tail) = (lines[0], &lines[1..end], lines[end..].join("\n"));
    let table_collation = tail
        .split_whitespace()
        .find_map(|word| word.strip_prefix("COLLATE="));
    let mut kept = Vec::new();
    let mut indexes = Vec::new();
    let mut foreign_keys = Vec::new();
    for line in body {
        let element = line.trim_end().trim_end_matches(',').trim();
        let element = match table_collation {
            Some(collation) => inherited_collation(element, collation),
            None => element.into(),
        };
        let element = element.as_ref();
        if is_secondary_index(element) {
            indexes.push(format!("ADD {element}"));
        } else if is_foreign_key(element) {
            foreign_keys.push(format!("ADD {element}"));
        } else {
            kept.push(format!("  {element}"));
        }
    }
    indexes.extend(foreign_keys);
    TableDdl {
        schema: table.schema.clone(),
        name: table.name.clone(),
        create: format!("{head}\n{}\n{tail}", kept.join(",\n")),
        add_indexes: (!indexes.is_empty())
            .then(|| format!("ALTER TABLE {} {}", table_name(table), indexes.join(", "))),
    }
}

/// A column that takes the table's collation is printed by MySQL with
/// `COLLATE` alone (no `CHARACTER SET`): created from that text, the column
/// would hold the collation as its own and print `CHARACTER SET` too. The
/// clause is dropped so that it inherits it again, as on the source.
fn inherited_collation<'a>(element: &'a str, table_collation: &str) -> std::borrow::Cow<'a, str> {
    let clause = format!(" COLLATE {table_collation}");
    if !element.starts_with('`') || top_level_find(element, " CHARACTER SET ").is_some() {
        return element.into();
    }
    match top_level_find(element, &clause) {
        Some(at)
            if element[at + clause.len()..]
                .chars()
                .next()
                .is_none_or(|c| c == ' ') =>
        {
            format!("{}{}", &element[..at], &element[at + clause.len()..]).into()
        }
        _ => element.into(),
    }
}

/// Where `needle` first occurs outside quotes and parentheses.
fn top_level_find(text: &str, needle: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(open), _) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, _) if depth == 0 && text[i..].starts_with(needle) => return Some(i),
            _ => {}
        }
    }
    None
}

impl TableDdl {
    /// `schema.table`, as reports name tables.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// Where `DEFINER=user@host` lies in `sql`: the clause's start and the
/// value's end. Names may be quoted with backquotes or, under `ANSI_QUOTES`,
/// double quotes, and may hold spaces.
fn definer_clause(sql: &str) -> Option<(usize, usize)> {
    let start = sql.find("DEFINER=")?;
    let value = start + "DEFINER=".len();
    let mut quote: Option<char> = None;
    for (i, c) in sql[value..].char_indices() {
        match (quote, c) {
            (None, '`' | '"' | '\'') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, ' ' | '\n') => return Some((start, value + i)),
            _ => {}
        }
    }
    Some((start, sql.len()))
}

/// Remove a `DEFINER=user@host` clause: the object is then created by the
/// loading account.
pub fn without_definer(sql: &str) -> String {
    match definer_clause(sql) {
        Some((start, end)) => format!("{}{}", &sql[..start], sql[end..].trim_start()),
        None => sql.to_string(),
    }
}

/// What a stored object is, as `SHOW CREATE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ObjectKind {
    Function,
    Procedure,
    Trigger,
    View,
    Event,
}

impl ObjectKind {
    pub fn word(self) -> &'static str {
        match self {
            ObjectKind::Function => "function",
            ObjectKind::Procedure => "procedure",
            ObjectKind::Trigger => "trigger",
            ObjectKind::View => "view",
            ObjectKind::Event => "event",
        }
    }
}

/// One routine, trigger, view or event as the source holds it: its statement
/// (definer included) and the session settings it was created under, which
/// decide how the literals and names in its body are read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredObject {
    pub kind: ObjectKind,
    pub name: String,
    pub create: String,
    /// `None` for views, which keep no sql_mode.
    pub sql_mode: Option<String>,
    /// Events only: the time zone their schedule is read in.
    pub time_zone: Option<String>,
    pub character_set_client: String,
    pub collation_connection: String,
}

impl StoredObject {
    /// The session settings to create it under, as one `SET`.
    pub fn session_settings(&self) -> String {
        let mut settings = vec![
            format!(
                "SESSION character_set_client = {}",
                quote(&self.character_set_client)
            ),
            format!(
                "SESSION collation_connection = {}",
                quote(&self.collation_connection)
            ),
        ];
        if let Some(mode) = &self.sql_mode {
            settings.push(format!("SESSION sql_mode = {}", quote(mode)));
        }
        if let Some(zone) = &self.time_zone {
            settings.push(format!("SESSION time_zone = {}", quote(zone)));
        }
        format!("SET {}", settings.join(", "))
    }

    /// The statement's text reads the same in its own client character set:
    /// the UTF-8 family, or plain ASCII in any set. (A statement with other
    /// bytes in latin1, say, would need re-encoding; it is created in utf8mb4
    /// and the report says so.)
    pub fn sendable_as_is(&self) -> bool {
        self.character_set_client.starts_with("utf8") || self.create.is_ascii()
    }

    /// The account after `DEFINER=`, as printed.
    pub fn definer(&self) -> Option<&str> {
        let (start, end) = definer_clause(&self.create)?;
        Some(&self.create[start + "DEFINER=".len()..end])
    }

    /// `kind schema.name`, for messages.
    pub fn describe(&self, schema: &str) -> String {
        format!("{} `{schema}`.`{}`", self.kind.word(), self.name)
    }
}

/// Everything but the tables, in an order that lets each statement succeed.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Objects {
    /// Before the views that may call them.
    pub routines: Vec<StoredObject>,
    /// After the data so the load does not fire them. Per table, timing and
    /// event in the source's `ACTION_ORDER`: `SHOW CREATE TRIGGER` drops a
    /// trigger's `FOLLOWS`/`PRECEDES`, and each one created is ordered last.
    pub triggers: Vec<StoredObject>,
    pub views: Vec<StoredObject>,
    /// Last. An event the source runs is created `DISABLE ON SLAVE` (MariaDB)
    /// or `DISABLE ON REPLICA` (MySQL): a replica must not run it as well;
    /// the cutover's promote enables it on the new primary.
    pub events: Vec<StoredObject>,
    /// `kind schema.name` of each object whose definition the source would not
    /// show the reading account (so it is not copied).
    #[serde(default)]
    pub unreadable: Vec<String>,
}

impl Objects {
    pub fn all(&self) -> impl Iterator<Item = &StoredObject> {
        self.routines
            .iter()
            .chain(&self.triggers)
            .chain(&self.views)
            .chain(&self.events)
    }
}

/// The text of every cell of one row, by position (NULL as `None`).
fn cells(row: mysql_async::Row) -> Vec<Option<String>> {
    row.unwrap()
        .into_iter()
        .map(|value| match value {
            mysql_async::Value::NULL => None,
            mysql_async::Value::Bytes(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            other => Some(other.as_sql(true).trim_matches('\'').to_string()),
        })
        .collect()
}

/// `SHOW CREATE …` of one object, as cells (`None`: it is gone, or the
/// account may not see its body).
async fn show_create(
    session: &mut Session,
    what: &str,
    sql: &str,
) -> Result<Option<Vec<Option<String>>>, MysqlError> {
    let row: Option<mysql_async::Row> = session.query_first(what, sql).await?;
    Ok(row.map(cells))
}

fn cell(cells: &[Option<String>], i: usize) -> Option<String> {
    cells.get(i).cloned().flatten()
}

/// A stored object from its `SHOW CREATE` cells: the statement at
/// `statement`, the character set and collation right after it (events and
/// routines also have their sql_mode at 1; events their time zone at 2).
fn stored(
    kind: ObjectKind,
    name: String,
    cells: &[Option<String>],
    statement: usize,
) -> Option<StoredObject> {
    let create = cell(cells, statement)?;
    Some(StoredObject {
        kind,
        name,
        create,
        sql_mode: (kind != ObjectKind::View).then(|| cell(cells, 1).unwrap_or_default()),
        time_zone: if kind == ObjectKind::Event {
            cell(cells, 2)
        } else {
            None
        },
        character_set_client: cell(cells, statement + 1).unwrap_or_else(|| "utf8mb4".into()),
        collation_connection: cell(cells, statement + 2)
            .unwrap_or_else(|| "utf8mb4_general_ci".into()),
    })
}

/// The status word an enabled event is created with on a replica.
pub fn replica_side_disabled(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "DISABLE ON SLAVE",
        Flavor::Mysql => "DISABLE ON REPLICA",
    }
}

/// Read routines, triggers, views and events of `schema` from the source.
pub async fn objects(
    session: &mut Session,
    schema: &str,
    flavor: Flavor,
) -> Result<Objects, MysqlError> {
    let quoted = quote(schema);
    let mut objects = Objects::default();
    let routines: Vec<(String, String)> = session
        .query(
            "list routines",
            &format!(
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA = {quoted} ORDER BY ROUTINE_NAME"
            ),
        )
        .await?;
    for (name, kind) in routines {
        let sql = format!("SHOW CREATE {kind} {}.{}", ident(schema), ident(&name));
        let kind = if kind.eq_ignore_ascii_case("FUNCTION") {
            ObjectKind::Function
        } else {
            ObjectKind::Procedure
        };
        // Name, sql_mode, statement, character_set_client, collation_connection, …
        let what = format!("{} `{schema}`.`{name}`", kind.word());
        match show_create(session, "read a routine", &sql)
            .await?
            .and_then(|c| stored(kind, name, &c, 2))
        {
            Some(routine) => objects.routines.push(routine),
            None => objects.unreadable.push(what),
        }
    }
    let triggers: Vec<String> = session
        .query(
            "list triggers",
            &format!(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = {quoted} \
                 ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
            ),
        )
        .await?;
    for name in triggers {
        let sql = format!("SHOW CREATE TRIGGER {}.{}", ident(schema), ident(&name));
        // Trigger, sql_mode, statement, character_set_client, collation_connection, …
        if let Some(c) = show_create(session, "read a trigger", &sql).await? {
            objects
                .triggers
                .extend(stored(ObjectKind::Trigger, name, &c, 2));
        }
    }
    let views: Vec<String> = session
        .query(
            "list views",
            &format!(
                "SELECT TABLE_NAME FROM information_schema.VIEWS \
                 WHERE TABLE_SCHEMA = {quoted} ORDER BY TABLE_NAME"
            ),
        )
        .await?;
    for name in views {
        let sql = format!("SHOW CREATE VIEW {}.{}", ident(schema), ident(&name));
        // View, statement, character_set_client, collation_connection.
        let what = format!("view `{schema}`.`{name}`");
        match show_create(session, "read a view", &sql)
            .await?
            .and_then(|c| stored(ObjectKind::View, name, &c, 1))
        {
            Some(view) => objects.views.push(view),
            None => objects.unreadable.push(what),
        }
    }
    let events: Vec<(String, String)> = session
        .query(
            "list events",
            &format!(
                "SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS \
                 WHERE EVENT_SCHEMA = {quoted} ORDER BY EVENT_NAME"
            ),
        )
        .await?;
    for (name, status) in events {
        let sql = format!("SHOW CREATE EVENT {}.{}", ident(schema), ident(&name));
        // Event, sql_mode, time_zone, statement, character_set_client, collation_connection, …
        let what = format!("event `{schema}`.`{name}`");
        let Some(mut event) = show_create(session, "read an event", &sql)
            .await?
            .and_then(|c| stored(ObjectKind::Event, name, &c, 3))
        else {
            objects.unreadable.push(what);
            continue;
        };
        if status == "ENABLED" {
            event.create = event.create.replacen(
                "PRESERVE ENABLE",
                &format!("PRESERVE {}", replica_side_disabled(flavor)),
                1,
            );
        }
        objects.events.push(event);
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(schema: &str, name: &str) -> TableSpec {
        TableSpec {
            schema: schema.into(),
            name: name.into(),
            columns: vec![],
            key: None,
            estimated_rows: 0,
            versioned: false,
        }
    }

    const TRANSACTIONS: &str = "CREATE TABLE `transactions` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `txn_ref` char(22) NOT NULL,
  `amount` decimal(15,2) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_txn_ref` (`txn_ref`),
  KEY `idx_created_at` (`created_at`)
) ENGINE=InnoDB AUTO_INCREMENT=2001 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

    #[test]
    fn secondary_indexes_move_after_the_data() {
        let ddl = split_table(&spec("refunds", "transactions"), TRANSACTIONS);
        assert_eq!(
            ddl.create,
            "CREATE TABLE `transactions` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `txn_ref` char(22) NOT NULL,
  `amount` decimal(15,2) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB AUTO_INCREMENT=2001 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        );
        assert_eq!(
            ddl.add_indexes.as_deref(),
            Some(
                "ALTER TABLE `refunds`.`transactions` ADD UNIQUE KEY `uk_txn_ref` (`txn_ref`), \
                 ADD KEY `idx_created_at` (`created_at`)"
            )
        );
    }

    #[test]
    fn a_table_without_secondary_indexes_is_unchanged() {
        let create =
            "CREATE TABLE `t` (\n  `a` int(11) NOT NULL,\n  PRIMARY KEY (`a`)\n) ENGINE=InnoDB";
        let ddl = split_table(&spec("s", "t"), create);
        assert_eq!(ddl.create, create);
        assert_eq!(ddl.add_indexes, None);
    }

    #[test]
    fn a_partitioned_table_keeps_its_partitioning_after_the_definition() {
        let create = "CREATE TABLE `part_sub` (
  `id` int(11) NOT NULL,
  `created` date NOT NULL,
  `amount` decimal(15,2) DEFAULT NULL,
  PRIMARY KEY (`id`,`created`),
  KEY `k_amount` (`amount`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
 PARTITION BY RANGE (year(`created`))
SUBPARTITION BY HASH (`id`)
SUBPARTITIONS 2
(PARTITION `old` VALUES LESS THAN (2021) ENGINE = InnoDB,
 PARTITION `new` VALUES LESS THAN MAXVALUE ENGINE = InnoDB)";
        let ddl = split_table(&spec("zoo", "part_sub"), create);
        assert_eq!(
            ddl.create,
            "CREATE TABLE `part_sub` (
  `id` int(11) NOT NULL,
  `created` date NOT NULL,
  `amount` decimal(15,2) DEFAULT NULL,
  PRIMARY KEY (`id`,`created`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
 PARTITION BY RANGE (year(`created`))
SUBPARTITION BY HASH (`id`)
SUBPARTITIONS 2
(PARTITION `old` VALUES LESS THAN (2021) ENGINE = InnoDB,
 PARTITION `new` VALUES LESS THAN MAXVALUE ENGINE = InnoDB)"
        );
        assert_eq!(
            ddl.add_indexes.as_deref(),
            Some("ALTER TABLE `zoo`.`part_sub` ADD KEY `k_amount` (`amount`)")
        );
        assert_eq!(ddl.display_name(), "zoo.part_sub");
    }

    #[test]
    fn a_column_keeps_inheriting_the_table_collation() {
        let create = "CREATE TABLE `t` (
  `id` int NOT NULL,
  `owner` varchar(20) COLLATE utf8mb4_unicode_ci NOT NULL DEFAULT ' COLLATE utf8mb4_unicode_ci',
  `own` varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci DEFAULT NULL,
  `bin` varchar(20) COLLATE utf8mb4_bin DEFAULT NULL,
  `e` enum('a COLLATE utf8mb4_unicode_ci') COLLATE utf8mb4_unicode_ci,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";
        let ddl = split_table(&spec("s", "t"), create);
        assert_eq!(
            ddl.create,
            "CREATE TABLE `t` (
  `id` int NOT NULL,
  `owner` varchar(20) NOT NULL DEFAULT ' COLLATE utf8mb4_unicode_ci',
  `own` varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci DEFAULT NULL,
  `bin` varchar(20) COLLATE utf8mb4_bin DEFAULT NULL,
  `e` enum('a COLLATE utf8mb4_unicode_ci'),
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        );
    }

    #[test]
    fn foreign_keys_follow_the_indexes_they_use() {
        let create = "CREATE TABLE `accounts` (
  `id` int(11) NOT NULL,
  `parent_id` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `fk_parent` (`parent_id`),
  CONSTRAINT `chk_id` CHECK (`id` > 0),
  CONSTRAINT `fk_parent` FOREIGN KEY (`parent_id`) REFERENCES `accounts` (`id`) ON DELETE SET NULL
) ENGINE=InnoDB";
        let ddl = split_table(&spec("zoo", "accounts"), create);
        assert!(
            ddl.create.contains("CONSTRAINT `chk_id` CHECK"),
            "{}",
            ddl.create
        );
        assert!(!ddl.create.contains("FOREIGN KEY"), "{}", ddl.create);
        assert_eq!(
            ddl.add_indexes.as_deref(),
            Some(
                "ALTER TABLE `zoo`.`accounts` ADD KEY `fk_parent` (`parent_id`), ADD CONSTRAINT \
                 `fk_parent` FOREIGN KEY (`parent_id`) REFERENCES `accounts` (`id`) ON DELETE SET NULL"
            )
        );
    }

    #[test]
    fn definers_are_read_in_any_quoting() {
        let object = StoredObject {
            kind: ObjectKind::Trigger,
            name: "t".into(),
            create: "CREATE DEFINER=\"zoo owner\"@\"%\" TRIGGER t AFTER INSERT ON x FOR EACH ROW SET @a = 1"
                .into(),
            sql_mode: Some("ANSI_QUOTES".into()),
            time_zone: None,
            character_set_client: "utf8mb3".into(),
            collation_connection: "utf8mb3_general_ci".into(),
        };
        assert_eq!(object.definer(), Some("\"zoo owner\"@\"%\""));
        assert_eq!(
            without_definer(&object.create),
            "CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW SET @a = 1"
        );
        assert_eq!(
            object.session_settings(),
            "SET SESSION character_set_client = 'utf8mb3', SESSION collation_connection = \
             'utf8mb3_general_ci', SESSION sql_mode = 'ANSI_QUOTES'"
        );
        assert!(object.sendable_as_is());
        let latin1 = StoredObject {
            character_set_client: "latin1".into(),
            create: "CREATE VIEW v AS SELECT 'é'".into(),
            ..object.clone()
        };
        assert!(!latin1.sendable_as_is());
        assert_eq!(latin1.definer(), None);
    }

    #[test]
    fn show_create_cells_become_objects() {
        let cells = |list: &[&str]| list.iter().map(|c| Some(c.to_string())).collect::<Vec<_>>();
        let event = stored(
            ObjectKind::Event,
            "tick".into(),
            &cells(&[
                "tick",
                "ANSI_QUOTES",
                "+00:00",
                "CREATE EVENT …",
                "utf8mb3",
                "utf8mb3_general_ci",
                "x",
            ]),
            3,
        )
        .unwrap();
        assert_eq!(event.create, "CREATE EVENT …");
        assert_eq!(event.sql_mode.as_deref(), Some("ANSI_QUOTES"));
        assert_eq!(event.time_zone.as_deref(), Some("+00:00"));
        assert_eq!(event.character_set_client, "utf8mb3");
        assert_eq!(event.collation_connection, "utf8mb3_general_ci");
        let view = stored(
            ObjectKind::View,
            "v".into(),
            &cells(&["v", "CREATE VIEW …", "latin1", "latin1_swedish_ci"]),
            1,
        )
        .unwrap();
        assert_eq!((view.sql_mode, view.time_zone), (None, None));
        assert_eq!(view.character_set_client, "latin1");
        // A body the account may not see comes back NULL: nothing to create.
        let hidden = vec![Some("f".to_string()), Some(String::new()), None];
        assert!(stored(ObjectKind::Function, "f".into(), &hidden, 2).is_none());
    }

    #[test]
    fn definers_are_dropped() {
        assert_eq!(
            without_definer(
                "CREATE ALGORITHM=UNDEFINED DEFINER=`cutover admin`@`127.%` SQL SECURITY DEFINER VIEW `v` AS select 1"
            ),
            "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
        assert_eq!(
            without_definer("CREATE VIEW v AS select 1"),
            "CREATE VIEW v AS select 1"
        );
    }
}

//! A property of SQL rendering, checked on the real databases: a string literal rendered by
//! `ibarrow-sql` for hostile text (quotes, backslashes, semicolons, comment markers, line
//! breaks, non-ASCII) is read back by PostgreSQL, MariaDB and SQLite as exactly that text, in
//! one row of one column — nothing escapes the literal to become a statement of its own.

mod common;

use common::{Profile, hostile_texts};
use odbc_api::{ConnectionOptions, Cursor, ResultSetMetadata};
use test_case::test_case;

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
fn rendered_string_literals_read_back_unchanged(profile: Profile) {
    let db = profile.open();
    let env = odbc_api::environment().expect("ODBC environment");
    let conn = env
        .connect_with_connection_string(&db.connection_string, ConnectionOptions::default())
        .expect("connect");
    let dialect = profile.dialect();
    let texts = hostile_texts(500, 0x2545_f491_4f6c_dd1d);
    for text in &texts {
        let literal = dialect
            .string_literal(text)
            .expect("every text without NUL renders");
        let sql = format!("SELECT {literal} AS v");
        let mut cursor = conn
            .execute(&sql, (), None)
            .unwrap_or_else(|err| panic!("{profile:?} refused `{sql}`: {err}"))
            .unwrap_or_else(|| panic!("`{sql}` returned no result set"));
        assert_eq!(cursor.num_result_cols().unwrap(), 1, "`{sql}`");
        let mut row = cursor.next_row().unwrap().expect("one row");
        let mut value = Vec::new();
        row.get_text(1, &mut value).unwrap();
        assert_eq!(String::from_utf8_lossy(&value), text.as_str(), "`{sql}`");
        assert!(
            cursor.next_row().unwrap().is_none(),
            "a second row from `{sql}`"
        );
    }
    eprintln!(
        "{profile:?}: {} hostile literals read back unchanged",
        texts.len()
    );
}

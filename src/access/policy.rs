//! Roles and what a user's roles grant together (`[roles.<name>]`, `[users.<name>] roles`):
//! pure decisions over names, no plans here. Several roles combine as a union of grants: a
//! table is readable when one role reads it; a column is plain when one of those roles reads
//! it plain, masked (by the first such role's mask) when one of them masks it, and denied only
//! when every one of them denies it; rows are limited only when every role that reads the
//! table limits them, to the rows any of their filters keeps.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::pattern::NamePattern;
use crate::config::{Config, RoleConfig};
use crate::error::{Error, Result};

/// A table as grants name it: the source, the remote schema and the remote table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableName<'a> {
    /// The source's name (the catalog).
    pub source: &'a str,
    /// The schema in the source's database.
    pub schema: &'a str,
    /// The table's name in the source's database.
    pub table: &'a str,
}

impl std::fmt::Display for TableName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.source, self.schema, self.table)
    }
}

impl TableName<'_> {
    fn parts(&self) -> [&str; 3] {
        [self.source, self.schema, self.table]
    }

    fn column_parts<'c>(&'c self, column: &'c str) -> [&'c str; 4] {
        [self.source, self.schema, self.table, column]
    }
}

#[derive(Debug)]
struct Role {
    name: String,
    read: Vec<NamePattern>,
    deny_columns: Vec<NamePattern>,
    masks: Vec<(NamePattern, String)>,
    row_filters: Vec<(NamePattern, String)>,
    native_sql: bool,
    write: Vec<NamePattern>,
    monitor: bool,
}

impl Role {
    fn from_config(name: &str, config: &RoleConfig) -> Result<Self> {
        let at = |key: &str| format!("[roles.{name}] {key}");
        let patterns = |texts: &[String], parts: usize, key: &str| -> Result<Vec<NamePattern>> {
            texts
                .iter()
                .map(|text| NamePattern::parse(text, parts, &at(key)))
                .collect()
        };
        let keyed = |map: &BTreeMap<String, String>, parts: usize, key: &str| {
            map.iter()
                .map(|(text, expression)| {
                    if expression.trim().is_empty() {
                        return Err(Error::Config {
                            location: at(key),
                            message: format!("`{text}` has an empty expression"),
                        });
                    }
                    Ok((
                        NamePattern::parse(text, parts, &at(key))?,
                        expression.clone(),
                    ))
                })
                .collect::<Result<Vec<_>>>()
        };
        Ok(Self {
            name: name.to_string(),
            read: patterns(&config.read, 3, "read")?,
            deny_columns: patterns(&config.deny_columns, 4, "deny_columns")?,
            masks: keyed(&config.masks, 4, "masks")?,
            row_filters: keyed(&config.row_filters, 3, "row_filters")?,
            native_sql: config.native_sql.unwrap_or(false),
            write: patterns(&config.write, 3, "write")?,
            monitor: config.monitor.unwrap_or(false),
        })
    }

    fn reads(&self, table: &TableName) -> bool {
        self.read.iter().any(|p| p.matches(&table.parts()))
    }

    fn column(&self, table: &TableName, column: &str) -> ColumnAccess {
        let parts = table.column_parts(column);
        if self.deny_columns.iter().any(|p| p.matches(&parts)) {
            return ColumnAccess::Denied;
        }
        match self.masks.iter().find(|(p, _)| p.matches(&parts)) {
            Some((_, expression)) => ColumnAccess::Masked {
                role: self.name.clone(),
                expression: expression.clone(),
            },
            None => ColumnAccess::Plain,
        }
    }

    /// This role's row filters on `table`, all of which a row must pass.
    fn row_filters(&self, table: &TableName) -> Vec<RowFilter> {
        self.row_filters
            .iter()
            .filter(|(p, _)| p.matches(&table.parts()))
            .map(|(_, expression)| RowFilter {
                role: self.name.clone(),
                expression: expression.clone(),
            })
            .collect()
    }
}

/// The roles of the configuration and who holds them; built once per (re)load.
#[derive(Debug)]
pub struct AccessPolicy {
    roles: BTreeMap<String, Arc<Role>>,
    users: BTreeMap<String, Vec<String>>,
}

impl AccessPolicy {
    /// The policy of `config`, or `None` without `[roles]` (then everyone reads everything, as
    /// before roles existed). A user naming an unknown role is a configuration error.
    pub fn from_config(config: &Config) -> Result<Option<Self>> {
        // A user given a role that is not defined is an error also when no role is: without
        // `[roles]` everyone reads everything, which the operator did not mean.
        for (user, settings) in &config.users {
            if let Some(unknown) = settings
                .roles
                .iter()
                .find(|r| !config.roles.contains_key(*r))
            {
                return Err(Error::Config {
                    location: format!("[users.{user}] roles"),
                    message: format!(
                        "no role named `{unknown}`; define it as [roles.{unknown}] or remove it \
                         (roles: {})",
                        config.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        if config.roles.is_empty() {
            return Ok(None);
        }
        let roles = config
            .roles
            .iter()
            .map(|(name, role)| Ok((name.clone(), Arc::new(Role::from_config(name, role)?))))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let users = config
            .users
            .iter()
            .map(|(user, settings)| (user.clone(), settings.roles.clone()))
            .collect();
        Ok(Some(Self { roles, users }))
    }

    /// What `user`'s roles grant together.
    pub fn grants(&self, user: &str) -> Grants {
        let names = self.users.get(user).cloned().unwrap_or_default();
        Grants {
            user: user.to_string(),
            roles: names
                .iter()
                .filter_map(|name| self.roles.get(name).cloned())
                .collect(),
        }
    }
}

/// How one column of a readable table reaches the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnAccess {
    /// The column's own values.
    Plain,
    /// Replaced by `expression` (SQL over the table's columns), from role `role`.
    Masked {
        /// The role whose mask applies.
        role: String,
        /// The SQL expression the user sees instead of the column.
        expression: String,
    },
    /// The user may not read the column.
    Denied,
}

/// A role's condition on the rows of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilter {
    /// The role the filter comes from.
    pub role: String,
    /// The SQL condition the rows must pass.
    pub expression: String,
}

/// How a readable table reaches the user: each column's access, and the row filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableAccess {
    /// Each column's access, in the order the columns were given.
    pub columns: Vec<ColumnAccess>,
    /// `None`: every row. `Some(alternatives)`: the rows that pass all filters of at least one
    /// alternative (one alternative per role that reads the table).
    pub row_filter: Option<Vec<Vec<RowFilter>>>,
}

impl TableAccess {
    /// Every column plain and every row: the scan needs no rewriting.
    pub fn is_unrestricted(&self) -> bool {
        self.row_filter.is_none() && self.columns.iter().all(|c| *c == ColumnAccess::Plain)
    }
}

/// A user's effective grants: the union of its roles.
#[derive(Debug, Clone)]
pub struct Grants {
    user: String,
    roles: Vec<Arc<Role>>,
}

impl Grants {
    /// The user the grants are for.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The names of the roles, for messages and the audit log.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.name.clone()).collect()
    }

    fn roles_text(&self) -> String {
        if self.roles.is_empty() {
            format!(
                "user `{}` has no roles; an operator gives it some with `roles = [...]` in \
                 [users.{}]",
                self.user, self.user
            )
        } else {
            format!(
                "none of the roles of user `{}` ({}) grants it",
                self.user,
                self.role_names().join(", ")
            )
        }
    }

    fn denied(&self, what: String, remedy: &str) -> Error {
        Error::AccessDenied(format!("{what}: {}; {remedy}", self.roles_text()))
    }

    /// Whether the user may read `table` at all (listings show only such tables).
    pub fn may_read(&self, table: &TableName) -> bool {
        self.roles.iter().any(|r| r.reads(table))
    }

    /// How `table`, whose columns are `columns`, reaches the user; an error if it may not
    /// read it.
    pub fn table(&self, table: &TableName, columns: &[&str]) -> Result<TableAccess> {
        let readers: Vec<&Arc<Role>> = self.roles.iter().filter(|r| r.reads(table)).collect();
        if readers.is_empty() {
            return Err(self.denied(
                format!("access denied: may not read {table}"),
                "an operator adds it to a role's `read` list in [roles.<name>]",
            ));
        }
        let columns = columns
            .iter()
            .map(|column| {
                let views: Vec<ColumnAccess> =
                    readers.iter().map(|r| r.column(table, column)).collect();
                if views.contains(&ColumnAccess::Plain) {
                    ColumnAccess::Plain
                } else {
                    views
                        .into_iter()
                        .find(|v| matches!(v, ColumnAccess::Masked { .. }))
                        .unwrap_or(ColumnAccess::Denied)
                }
            })
            .collect();
        let filters: Vec<Vec<RowFilter>> = readers.iter().map(|r| r.row_filters(table)).collect();
        let row_filter = if filters.iter().any(Vec::is_empty) {
            None
        } else {
            Some(filters)
        };
        Ok(TableAccess {
            columns,
            row_filter,
        })
    }

    /// The roles that deny `column` of `table`, for the message that names the denial.
    pub fn column_denial(&self, table: &TableName, column: &str) -> Error {
        let denying: Vec<String> = self
            .roles
            .iter()
            .filter(|r| r.reads(table) && r.column(table, column) == ColumnAccess::Denied)
            .map(|r| r.name.clone())
            .collect();
        Error::AccessDenied(format!(
            "access denied: user `{}` may not read the column {table}.{column} (denied by \
             `deny_columns` of role {}); name the other columns instead of `*`, or an operator \
             grants it through a role that does not deny it",
            self.user,
            denying.join(", ")
        ))
    }

    /// Whether the user may `INSERT INTO` `table`.
    pub fn check_write(&self, table: &TableName) -> Result<()> {
        let parts = table.parts();
        if self
            .roles
            .iter()
            .any(|r| r.write.iter().any(|p| p.matches(&parts)))
        {
            return Ok(());
        }
        Err(self.denied(
            format!("access denied: may not insert into {table}"),
            "an operator adds it to a role's `write` list in [roles.<name>]",
        ))
    }

    /// Whether a role of the user may see every user's statements (`monitor = true`).
    pub fn may_monitor(&self) -> bool {
        self.roles.iter().any(|r| r.monitor)
    }

    /// Whether the user may send native SQL to `source` (`query()`, `Session::native`).
    pub fn check_native_sql(&self, source: &str) -> Result<()> {
        if self.roles.iter().any(|r| r.native_sql) {
            return Ok(());
        }
        Err(self.denied(
            format!("access denied: may not run native SQL on `{source}` (query() passthrough)"),
            "query the tables through ibarrow instead, or an operator sets `native_sql = true` \
             in one of its roles",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> AccessPolicy {
        AccessPolicy::from_config(&Config::parse(text, "test").unwrap())
            .unwrap()
            .unwrap()
    }

    const ROLES: &str = r#"
        [roles.analyst]
        read = ["pg.public.*", "maria.crm.customers"]
        deny_columns = ["maria.crm.customers.ssn"]
        masks = { "maria.crm.customers.email" = "'***'" }
        row_filters = { "pg.public.orders" = "region = 'EU'" }
        [roles.support]
        read = ["maria.crm.customers"]
        deny_columns = ["maria.crm.customers.ssn", "maria.crm.customers.email"]
        row_filters = { "maria.crm.customers" = "country = 'FR'" }
        [roles.auditor]
        read = ["pg.public.orders"]
        row_filters = { "pg.public.orders" = "year = 2024" }
        [roles.admin]
        read = ["*.*.*"]
        native_sql = true
        write = ["pg.public.audit_*"]
        [users.alice]
        roles = ["analyst"]
        [users.bob]
        roles = ["analyst", "support"]
        [users.carol]
        roles = ["analyst", "auditor"]
        [users.root]
        roles = ["admin", "analyst"]
    "#;

    const CUSTOMERS: TableName = TableName {
        source: "maria",
        schema: "crm",
        table: "customers",
    };
    const ORDERS: TableName = TableName {
        source: "pg",
        schema: "public",
        table: "orders",
    };

    #[test]
    fn one_role_reads_masks_denies_and_filters() {
        let grants = policy(ROLES).grants("alice");
        let access = grants.table(&CUSTOMERS, &["id", "ssn", "email"]).unwrap();
        assert_eq!(access.columns[0], ColumnAccess::Plain);
        assert_eq!(access.columns[1], ColumnAccess::Denied);
        assert!(
            matches!(&access.columns[2], ColumnAccess::Masked { role, .. } if role == "analyst")
        );
        assert_eq!(access.row_filter, None);
        let orders = grants.table(&ORDERS, &["region"]).unwrap();
        assert_eq!(orders.row_filter.unwrap()[0][0].expression, "region = 'EU'");
        let secret = TableName {
            table: "secret",
            ..CUSTOMERS
        };
        let err = grants.table(&secret, &["x"]).unwrap_err().to_string();
        assert!(
            err.contains("maria.crm.secret") && err.contains("(analyst)") && err.contains("read"),
            "{err}"
        );
        assert!(grants.check_native_sql("pg").is_err());
        assert!(grants.check_write(&ORDERS).is_err());
    }

    #[test]
    fn roles_combine_as_a_union() {
        // bob: analyst masks email, support denies it → masked; both deny ssn → denied;
        // analyst reads every customer row, so support's row filter does not narrow bob's.
        let bob = policy(ROLES).grants("bob");
        let access = bob.table(&CUSTOMERS, &["ssn", "email"]).unwrap();
        assert_eq!(access.columns[0], ColumnAccess::Denied);
        assert!(matches!(access.columns[1], ColumnAccess::Masked { .. }));
        assert_eq!(access.row_filter, None);
        // carol: both roles filter orders → the rows either keeps.
        let carol = policy(ROLES).grants("carol");
        let filters = carol.table(&ORDERS, &[]).unwrap().row_filter.unwrap();
        assert_eq!(filters.len(), 2);
        // root: admin reads everything plain, which lifts analyst's mask, denial and filter.
        let root = policy(ROLES).grants("root");
        let access = root.table(&CUSTOMERS, &["ssn", "email"]).unwrap();
        assert!(access.is_unrestricted());
        assert!(root.table(&ORDERS, &["region"]).unwrap().is_unrestricted());
        assert!(root.check_native_sql("pg").is_ok());
        let audit_log = TableName {
            table: "audit_2026",
            ..ORDERS
        };
        assert!(root.check_write(&audit_log).is_ok());
        assert!(root.check_write(&ORDERS).is_err());
    }

    #[test]
    fn a_user_without_roles_reads_nothing_and_is_told_why() {
        let grants = policy(ROLES).grants("mallory");
        assert!(!grants.may_read(&ORDERS));
        let err = grants.table(&ORDERS, &[]).unwrap_err().to_string();
        assert!(
            err.contains("has no roles") && err.contains("[users.mallory]"),
            "{err}"
        );
    }

    #[test]
    fn configuration_mistakes_are_errors_that_name_the_setting() {
        let unknown = "[roles.a]\nread = [\"*.*.*\"]\n[users.u]\nroles = [\"b\"]\n";
        let err = AccessPolicy::from_config(&Config::parse(unknown, "t").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[users.u] roles") && err.contains("no role named `b`"),
            "{err}"
        );
        let shape = "[roles.a]\nread = [\"pg.orders\"]\n";
        let err = AccessPolicy::from_config(&Config::parse(shape, "t").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("[roles.a] read"), "{err}");
        let empty = "[roles.a]\nmasks = { \"a.b.c.d\" = \" \" }\n";
        let err = AccessPolicy::from_config(&Config::parse(empty, "t").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty expression"), "{err}");
        assert!(
            AccessPolicy::from_config(&Config::default())
                .unwrap()
                .is_none()
        );
    }
}

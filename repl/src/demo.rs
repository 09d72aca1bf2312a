//! The embedded demo: two SQLite databases, a shop and a CRM, created on first use through the
//! SQLite ODBC driver, so a new user can run a cross-database query without any server.
//!
//! The data is generated inside SQLite by recursive CTEs with fixed arithmetic, so every
//! machine gets the same rows and tests can check answers against SQLite itself.

use std::path::{Path, PathBuf};

use ibarrow::providers::{OdbcSource, SourceOptions};
use ibarrow::{Config, Error, Result};

/// Part of the file names: bumped when the generated data changes, so older demo files are
/// not reused.
const DEMO_VERSION: u32 = 1;

/// Rows of the demo's largest table (`shop.main.order_lines`).
pub const ORDER_LINES: i64 = 160_000;
const ORDERS: i64 = ORDER_LINES / 4;
const CUSTOMERS: i64 = 5_000;
const PRODUCTS: i64 = 500;

/// The query the REPL banner suggests: a join across both databases.
pub const FIRST_QUERY: &str = "SELECT r.name AS region, count(DISTINCT o.order_id) AS orders, \
sum(l.quantity * l.unit_price) AS revenue
FROM shop.main.order_lines l
JOIN shop.main.orders o ON o.order_id = l.order_id
JOIN crm.main.customers c ON c.customer_id = o.customer_id
JOIN crm.main.regions r ON r.region_id = c.region_id
WHERE o.status = 'delivered'
GROUP BY r.name
ORDER BY revenue DESC;";

/// Where the demo databases live.
#[derive(Debug, Clone)]
pub struct DemoFiles {
    /// The shop's SQLite file (products, orders, order lines), configured as source `shop`.
    pub shop: PathBuf,
    /// The CRM's SQLite file (regions, customers), configured as source `crm`.
    pub crm: PathBuf,
}

impl DemoFiles {
    /// The demo's file paths inside `dir`, named after the current demo version.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            shop: dir.join(format!("shop-v{DEMO_VERSION}.sqlite")),
            crm: dir.join(format!("crm-v{DEMO_VERSION}.sqlite")),
        }
    }

    /// The engine configuration: sources `shop` and `crm`, each table of order lines split
    /// in two ranges ([`Self::config_text`], parsed).
    pub fn config(&self) -> Result<Config> {
        Config::parse(&self.config_text()?, "the demo")
    }

    /// The demo's configuration as the text of a configuration file (`ibarrow demo`).
    pub fn config_text(&self) -> Result<String> {
        let mut text = String::from(DEMO_CONFIG_HEADER);
        for (name, path) in [("shop", &self.shop), ("crm", &self.crm)] {
            let connection_string = sqlite_connection_string(path)?;
            text.push_str(&format!(
                "\n[sources.{name}]\nconnection_string = \"{}\"\npartitions = 2\n",
                connection_string.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        Ok(text)
    }
}

/// The first line of a configuration `ibarrow demo` writes: a file that starts with it may be
/// written over.
pub const DEMO_CONFIG_HEADER: &str = "# The embedded demo's databases (`ibarrow demo`).\n";

/// Creates the demo databases in `dir` when missing or from an older version.
pub async fn prepare(dir: &Path) -> Result<DemoFiles> {
    std::fs::create_dir_all(dir).map_err(|err| Error::Config {
        location: dir.display().to_string(),
        message: format!(
            "cannot create the demo directory: {err}. Set IBARROW_DEMO_DIR to a writable folder"
        ),
    })?;
    let files = DemoFiles::in_dir(dir);
    build_if_needed(&files.shop, shop_script()).await?;
    build_if_needed(&files.crm, crm_script()).await?;
    Ok(files)
}

fn sqlite_connection_string(path: &Path) -> Result<String> {
    let text = path.to_str().filter(|p| !p.contains([';', '{', '}']));
    let Some(text) = text else {
        return Err(Error::Config {
            location: path.display().to_string(),
            message: "the demo path must be UTF-8 without `;`, `{` or `}`; set IBARROW_DEMO_DIR \
                      to another folder"
                .into(),
        });
    };
    Ok(format!("Driver={{SQLite3}};Database={text};"))
}

async fn build_if_needed(path: &Path, script: Vec<String>) -> Result<()> {
    // A file under the final name is complete: it is built elsewhere and renamed.
    if path.exists() {
        return Ok(());
    }
    // Built under another name and renamed, so an interrupted build never looks finished.
    let partial = path.with_extension("sqlite.partial");
    let _ = std::fs::remove_file(&partial);
    let source = connect(&partial).await?;
    let spec = ibarrow::providers::CallSpec::new(&source, "creating the demo data").once();
    source
        .call(spec, move |conn| {
            for statement in &script {
                conn.execute(statement, (), None)
                    .map_err(|err| conn.failure("creating the demo data", err))?;
            }
            Ok(())
        })
        .await?;
    drop(source);
    std::fs::rename(&partial, path).map_err(|err| Error::Config {
        location: path.display().to_string(),
        message: format!("cannot move the finished demo database into place: {err}"),
    })?;
    Ok(())
}

async fn connect(path: &Path) -> Result<std::sync::Arc<OdbcSource>, Error> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("demo")
        .to_string();
    // Only the builder writes; the engine's demo sources stay read-only.
    let options = SourceOptions {
        writable: true,
        ..SourceOptions::default()
    };
    Ok(OdbcSource::connect(
        &format!("demo {name}"),
        &sqlite_connection_string(path)?,
        options,
    )
    .await?)
}

/// `WITH RECURSIVE seq(n)` counting 1 … `rows`, for generating rows inside SQLite.
fn numbers(rows: i64) -> String {
    format!("WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows})")
}

fn shop_script() -> Vec<String> {
    vec![
        "CREATE TABLE products (product_id INTEGER PRIMARY KEY, name VARCHAR(60) NOT NULL, \
         category VARCHAR(20) NOT NULL, unit_price DECIMAL(10,2) NOT NULL)"
            .into(),
        // Six categories, prices 2.00 … 99.99.
        format!(
            "INSERT INTO products {} SELECT n, 'Product ' || n, CASE n % 6 WHEN 0 THEN 'books' \
             WHEN 1 THEN 'garden' WHEN 2 THEN 'kitchen' WHEN 3 THEN 'toys' WHEN 4 THEN 'sports' \
             ELSE 'music' END, 2 + ((n * 7919) % 9800) / 100.0 FROM seq",
            numbers(PRODUCTS)
        ),
        "CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, \
         order_date DATE NOT NULL, status VARCHAR(12) NOT NULL)"
            .into(),
        // Two years of orders; 7919 is prime, so every customer gets orders.
        format!(
            "INSERT INTO orders {} SELECT n, 1 + (n * 7919) % {CUSTOMERS}, \
             date('2024-01-01', '+' || ((n * 13) % 731) || ' days'), CASE n % 10 \
             WHEN 0 THEN 'cancelled' WHEN 1 THEN 'open' WHEN 2 THEN 'shipped' ELSE 'delivered' END \
             FROM seq",
            numbers(ORDERS)
        ),
        "CREATE TABLE order_lines (line_id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, \
         line_no INTEGER NOT NULL, product_id INTEGER NOT NULL, quantity INTEGER NOT NULL, \
         unit_price DECIMAL(10,2) NOT NULL, discount DECIMAL(4,2) NOT NULL)"
            .into(),
        // Four lines per order.
        format!(
            "INSERT INTO order_lines {} SELECT n, (n - 1) / 4 + 1, (n - 1) % 4 + 1, p.product_id, \
             1 + (n * 31) % 9, p.unit_price, ((n * 17) % 4) * 0.05 FROM seq JOIN products p \
             ON p.product_id = 1 + ((n * 2654435761) % {PRODUCTS})",
            numbers(ORDER_LINES)
        ),
        "CREATE INDEX order_lines_order ON order_lines (order_id)".into(),
    ]
}

fn crm_script() -> Vec<String> {
    vec![
        "CREATE TABLE regions (region_id INTEGER PRIMARY KEY, name VARCHAR(30) NOT NULL, \
         country VARCHAR(30) NOT NULL)"
            .into(),
        "INSERT INTO regions VALUES (1, 'Nordics', 'Sweden'), (2, 'Benelux', 'Netherlands'), \
         (3, 'Iberia', 'Spain'), (4, 'Alps', 'Switzerland'), (5, 'Baltics', 'Estonia'), \
         (6, 'Balkans', 'Croatia'), (7, 'British Isles', 'Ireland'), \
         (8, 'Central Europe', 'Austria'), (9, 'France', 'France'), (10, 'Italy', 'Italy'), \
         (11, 'Germany', 'Germany'), (12, 'Poland', 'Poland')"
            .into(),
        "CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL, \
         email VARCHAR(60) NOT NULL, region_id INTEGER NOT NULL, segment VARCHAR(12) NOT NULL, \
         signup_date DATE NOT NULL)"
            .into(),
        format!(
            "INSERT INTO customers {} SELECT n, 'Customer ' || n, 'customer' || n || '@example.com', \
             1 + (n * 7) % 12, CASE n % 3 WHEN 0 THEN 'consumer' WHEN 1 THEN 'business' \
             ELSE 'public' END, date('2020-01-01', '+' || ((n * 37) % 1461) || ' days') FROM seq",
            numbers(CUSTOMERS)
        ),
    ]
}

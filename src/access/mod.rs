//! Who may read what (`[roles.<name>]`, `[users.<name>] roles`; docs/access.md): grants as
//! pure decisions ([`policy`]), enforced in the logical plan of every statement a session plans
//! ([`rewrite`]), and listings filtered to match ([`listing`]).

mod identity;
mod listing;
mod pattern;
mod policy;
mod report;
mod rewrite;

use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;

pub use identity::session_user;
pub use listing::GovernedCatalogs;
pub use pattern::NamePattern;
pub use policy::{AccessPolicy, ColumnAccess, Grants, RowFilter, TableAccess, TableName};
pub use report::{AccessReport, TableRead};
pub(crate) use rewrite::{DENIED_COLUMN_FUNCTION, govern, table_name};

/// The state a session of `grants` plans in: the engine's, with the catalogs filtered for the
/// user and `information_schema` served from the filtered catalogs.
pub(crate) fn governed_state(state: SessionState, grants: &Arc<Grants>) -> SessionState {
    let catalogs = GovernedCatalogs::new(
        Arc::clone(state.catalog_list()),
        Arc::clone(grants),
        state.table_functions().clone(),
    );
    // DataFusion would answer `information_schema` from the unfiltered catalogs; the governed
    // catalogs serve it instead.
    let mut config = state
        .config()
        .clone()
        .with_create_default_catalog_and_schema(false);
    config.options_mut().catalog.information_schema = false;
    SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .with_catalog_list(Arc::new(catalogs))
        .build()
}

//! The shared state every handler reaches (`AppState`). Kept apart from `app.rs`, which
//! builds it, so handlers depend on the state without depending on the wiring.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::secret_box::SecretBox;
use crate::config::Config;
use crate::governance::Governance;
use crate::router::Router;
use crate::spend::prices::PriceTable;
use crate::spend::SpendWriter;
use crate::store::Store;

/// Everything a request handler can reach.
pub struct App {
    pub config: Config,
    pub http: crate::providers::HttpClient,
    pub store: Store,
    pub router: Router,
    pub governance: Governance,
    pub spend: SpendWriter,
    pub prices: PriceTable,
    /// Seals provider keys of runtime models at rest.
    pub secrets: SecretBox,
    /// Keeps the serving thread awake between requests (`busy_poll`).
    pub busy_poll: crate::busy_poll::BusyPoll,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

pub type AppState = Arc<App>;

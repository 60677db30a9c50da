//! Injection: a ticket issued in S-360 is created in TIXnGO (and counts as printed in S-360).

use crate::engine::FlowHandler;
use crate::flow::Flow;
use crate::messages::InjectMessage;
use crate::orgs::Organization;
use crate::tixngo::{CallError, ItemResult, TicketDocument};

/// The injection flow.
#[derive(Debug, Default)]
pub struct Inject;

impl FlowHandler for Inject {
    const FLOW: Flow = Flow::Inject;
    type Message = InjectMessage;
    type Prepared = TicketDocument;

    fn prepare(&self, message: InjectMessage, organization: &Organization) -> Result<TicketDocument, String> {
        organization.render(&message)
    }

    async fn call(
        &self,
        organization: &Organization,
        batch: &[&TicketDocument],
    ) -> Result<Vec<ItemResult>, CallError> {
        organization.client.inject(batch).await
    }
}

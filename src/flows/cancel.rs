//! Cancellation: a ticket cancelled or invalidated in S-360 is deleted in TIXnGO.

use crate::engine::FlowHandler;
use crate::flow::Flow;
use crate::messages::CancelMessage;
use crate::orgs::Organization;
use crate::tixngo::{CallError, CancelItem, ItemResult};

/// The cancellation flow.
#[derive(Debug, Default)]
pub struct Cancel;

impl FlowHandler for Cancel {
    const FLOW: Flow = Flow::Cancel;
    type Message = CancelMessage;
    type Prepared = CancelItem;

    fn prepare(&self, message: CancelMessage, _: &Organization) -> Result<CancelItem, String> {
        Ok(CancelItem {
            ticket_id: message.ticket_id,
            reason: message.reason,
            show_deleted_ticket: message.show_deleted_ticket,
        })
    }

    async fn call(
        &self,
        organization: &Organization,
        batch: &[&CancelItem],
    ) -> Result<Vec<ItemResult>, CallError> {
        organization.client.cancel(batch).await
    }
}

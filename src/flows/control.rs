//! Control: a ticket scanned at the gate is marked controlled in TIXnGO (no longer transferable).

use chrono::SecondsFormat;

use crate::engine::FlowHandler;
use crate::flow::Flow;
use crate::messages::ControlMessage;
use crate::orgs::Organization;
use crate::tixngo::{CallError, ControlItem, ItemResult};

/// The control flow.
#[derive(Debug, Default)]
pub struct Control;

impl FlowHandler for Control {
    const FLOW: Flow = Flow::Control;
    type Message = ControlMessage;
    type Prepared = ControlItem;

    fn prepare(&self, message: ControlMessage, _: &Organization) -> Result<ControlItem, String> {
        Ok(ControlItem {
            ticket_id: message.ticket_id,
            controlled_at: message.controlled_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            gate: message.gate,
            control_point: message.control_point,
        })
    }

    async fn call(
        &self,
        organization: &Organization,
        batch: &[&ControlItem],
    ) -> Result<Vec<ItemResult>, CallError> {
        organization.client.control(batch).await
    }
}

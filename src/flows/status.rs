//! On-demand status: S-360 asks for a ticket's TIXnGO status; the answer goes to `reply_to`
//! (with the query's `correlation_id`), or to the events exchange as `status.changed`.

use chrono::Utc;
use lapin::message::Delivery;
use serde::Serialize;

use crate::broker::Outgoing;
use crate::engine::FlowHandler;
use crate::engine::settle::{Known, Settler};
use crate::flow::Flow;
use crate::messages::{OutcomeEvent, StatusQuery};
use crate::orgs::Organization;
use crate::text::rfc3339;
use crate::tixngo::{CallError, ErrorClass, ItemError, ItemOk, ItemResult, S360Status};

/// The on-demand status flow.
#[derive(Debug, Default)]
pub struct Status;

/// The answer to a status query.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReply {
    /// S-360 organization.
    pub organization: String,
    /// Ticket id.
    pub ticket_id: String,
    /// False when TIXnGO does not know the ticket.
    pub found: bool,
    /// TIXnGO's status.
    pub tixngo_status: Option<String>,
    /// The S-360 status it maps to.
    pub s360_status: Option<&'static str>,
    /// When the bridge read it.
    pub read_at: String,
}

impl FlowHandler for Status {
    const FLOW: Flow = Flow::Status;
    type Message = StatusQuery;
    type Prepared = String;

    fn prepare(&self, message: StatusQuery, _: &Organization) -> Result<String, String> {
        Ok(message.ticket_id)
    }

    /// TIXnGO has no batch status call: one request per ticket, concurrently.
    async fn call(
        &self,
        organization: &Organization,
        batch: &[&String],
    ) -> Result<Vec<ItemResult>, CallError> {
        let calls = batch
            .iter()
            .map(|ticket_id| async move { (*ticket_id, organization.client.status(ticket_id).await) });
        let mut answers = futures::future::join_all(calls).await;
        // A whole-call failure (every ticket failed, not for good) is the organization's: the
        // breaker counts it, or pauses the organization for a failure no ticket can cause.
        let whole_failure = answers.iter().all(|(_, answer)| answer.is_err())
            && matches!(answers.first(), Some((_, Err(e))) if e.class() != ErrorClass::Permanent);
        if whole_failure && let (_, Err(first)) = answers.swap_remove(0) {
            return Err(first);
        }
        let results: Vec<ItemResult> = answers
            .into_iter()
            .map(|(ticket_id, answer)| match answer {
                Ok(state) => Ok(ItemOk {
                    ticket_id: ticket_id.clone(),
                    status: state.map(|s| s.status),
                    unchanged: true,
                }),
                Err(error) => Err(ItemError {
                    ticket_id: ticket_id.clone(),
                    code: error.http_status().unwrap_or(0),
                    class: if error.class() == ErrorClass::Permanent {
                        ErrorClass::Permanent
                    } else {
                        ErrorClass::Transient
                    },
                    message: error.to_string(),
                }),
            })
            .collect();
        Ok(results)
    }

    fn batch_max(&self, configured: usize) -> usize {
        configured.min(16)
    }

    fn on_success(
        &self,
        settler: &Settler,
        delivery: &Delivery,
        known: &Known,
        ok: &ItemOk,
    ) -> Vec<Outgoing> {
        let s360 = ok.status.as_deref().map(|s| S360Status::from_tixngo(s).as_str());
        match delivery.properties.reply_to() {
            Some(reply_to) => {
                let reply = StatusReply {
                    organization: known.organization.clone().unwrap_or_default(),
                    ticket_id: ok.ticket_id.clone(),
                    found: ok.status.is_some(),
                    tixngo_status: ok.status.clone(),
                    s360_status: s360,
                    read_at: rfc3339(Utc::now()),
                };
                let mut outgoing = settler.publishable("", reply_to.as_str(), &reply);
                if let Some(correlation_id) = delivery.properties.correlation_id() {
                    outgoing.properties = outgoing.properties.with_correlation_id(correlation_id.clone());
                }
                vec![outgoing]
            }
            None => vec![settler.event(
                delivery,
                known,
                OutcomeEvent {
                    kind: "status.changed".to_owned(),
                    organization: None,
                    ticket_id: None,
                    tixngo_status: ok.status.clone(),
                    previous_tixngo_status: None,
                    s360_status: s360.map(str::to_owned),
                    error_class: None,
                    error_message: None,
                    message_id: None,
                    at: rfc3339(Utc::now()),
                },
            )],
        }
    }
}

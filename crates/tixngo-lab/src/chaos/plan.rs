//! What a chaos run publishes: per ticket an injection and maybe a control or a cancellation,
//! plus about 1 % malformed messages, in an order shuffled within small windows (a follow-up
//! may overtake its injection, and must then retry until the ticket exists).

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::{ChaosArgs, ChaosError};
use crate::bench::load;
use tixngo_bridge::flows::Flow;

/// Messages are shuffled within windows of this many: near their injection, not minutes away.
const SHUFFLE_WINDOW: usize = 64;

/// What follows a ticket's injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Nothing: it ends `INJECTED`.
    None,
    /// A control: it ends `CONTROLLED`.
    Control,
    /// A cancellation: it ends deleted.
    Cancel,
}

/// One well-formed ticket of the plan.
#[derive(Debug, Clone)]
pub struct PlannedTicket {
    /// Its organization (simulator tenant).
    pub organization: String,
    /// Its id.
    pub ticket_id: String,
    /// What follows its injection, hence its expected final state.
    pub follow: Follow,
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `ticket.<flow>`.
    pub routing_key: String,
    /// The body (malformed ones on purpose).
    pub body: Vec<u8>,
    /// Its AMQP message id, stable across the harness's own republishing, so dead letters can
    /// be matched to the malformed messages.
    pub message_id: String,
}

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Organization names.
    pub organizations: Vec<String>,
    /// The well-formed tickets.
    pub tickets: Vec<PlannedTicket>,
    /// Every message in publishing order.
    pub messages: Vec<Outgoing>,
    /// Message ids of the malformed messages: exactly these must be dead-lettered.
    pub malformed_ids: Vec<String>,
}

impl Plan {
    /// A plan for `args`, the same for the same seed.
    pub fn new(args: &ChaosArgs, run: &str, seed: u64) -> Result<Self, ChaosError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let organizations: Vec<String> = (1..=args.organizations).map(|i| format!("CHAOS{i}")).collect();
        let mut tickets = Vec::with_capacity(args.tickets);
        let mut messages = Vec::new();
        let mut next_id = 0usize;
        let mut message = |routing_key: String, body: Vec<u8>| {
            next_id += 1;
            Outgoing {
                routing_key,
                body,
                message_id: format!("chaos-{run}-{next_id:08}"),
            }
        };
        let json_of = |v: &serde_json::Value| serde_json::to_vec(v).map_err(ChaosError::Json);
        for n in 0..args.tickets {
            let organization = organizations[n % organizations.len()].clone();
            let draw: f64 = rng.random();
            let follow = if draw < args.control_share {
                Follow::Control
            } else if draw < args.control_share + args.cancel_share {
                Follow::Cancel
            } else {
                Follow::None
            };
            let inject = load::message(Flow::Inject, &organization, run, n).map_err(bench_error)?;
            messages.push(message(Flow::Inject.routing_key(), json_of(&inject)?));
            let flow = match follow {
                Follow::None => None,
                Follow::Control => Some(Flow::Control),
                Follow::Cancel => Some(Flow::Cancel),
            };
            if let Some(flow) = flow {
                let body = load::message(flow, &organization, run, n).map_err(bench_error)?;
                messages.push(message(flow.routing_key(), json_of(&body)?));
            }
            tickets.push(PlannedTicket {
                organization,
                ticket_id: load::ticket_id(run, n),
                follow,
            });
        }
        let malformed = ((args.tickets as f64) * args.malformed_percent / 100.0).round() as usize;
        let mut malformed_ids = Vec::with_capacity(malformed);
        for m in 0..malformed {
            let organization = &organizations[m % organizations.len()];
            let flow = [Flow::Inject, Flow::Cancel, Flow::Control][m % 3];
            let mut body = load::message(flow, organization, run, args.tickets + m).map_err(bench_error)?;
            body["ticket_id"] = json!(format!("M-{run}-{m:06}"));
            let bytes = match m % 4 {
                // Not JSON at all: cut off in the middle.
                0 => {
                    let mut bytes = json_of(&body)?;
                    bytes.truncate(bytes.len() / 2);
                    bytes
                }
                // A field S-360 does not send.
                1 => {
                    body["chaos_unknown_field"] = json!(true);
                    json_of(&body)?
                }
                // An organization without an interface.
                2 => {
                    body["organization"] = json!("NO-SUCH-ORG");
                    json_of(&body)?
                }
                // A required field missing.
                _ => {
                    if let Some(object) = body.as_object_mut() {
                        object.remove("ticket_id");
                    }
                    json_of(&body)?
                }
            };
            let outgoing = message(flow.routing_key(), bytes);
            malformed_ids.push(outgoing.message_id.clone());
            let at = rng.random_range(0..=messages.len());
            messages.insert(at, outgoing);
        }
        for window in messages.chunks_mut(SHUFFLE_WINDOW) {
            window.shuffle(&mut rng);
        }
        Ok(Plan {
            organizations,
            tickets,
            messages,
            malformed_ids,
        })
    }
}

fn bench_error(error: crate::bench::BenchError) -> ChaosError {
    ChaosError::Setup(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_mixes_flows_and_malformed() {
        let args = ChaosArgs::new("amqp://localhost", 1000);
        let plan = Plan::new(&args, "t", 7).expect("plan");
        assert_eq!(plan.tickets.len(), 1000);
        assert_eq!(plan.malformed_ids.len(), 10);
        let follows = |f: Follow| plan.tickets.iter().filter(|t| t.follow == f).count();
        assert!(follows(Follow::Control) > 100 && follows(Follow::Cancel) > 100);
        let expected = 1000 + follows(Follow::Control) + follows(Follow::Cancel) + 10;
        assert_eq!(plan.messages.len(), expected);
        let again = Plan::new(&args, "t", 7).expect("plan");
        assert_eq!(again.malformed_ids, plan.malformed_ids);
    }
}

//! tixngo-bridge: keeps tickets aligned between S-360 and TIXnGO over RabbitMQ.
#![forbid(unsafe_code)]

pub mod sim;

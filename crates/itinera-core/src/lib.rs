//! The domain model of Itinera, free of I/O so that every backend and edge shares one meaning.
//!
//! - [`message`]: the Segment Spec messages that arrive over HTTP or bulk import, validated and
//!   normalized (clock skew corrected, ids checked, secrets stripped).
//! - [`touchpoint`]: the typed row that the store keeps for each message (channel, touchpoint name,
//!   revenue) next to the full normalized message.
//! - [`channel`]: the documented, configurable rule set that gives every touchpoint a channel.
//! - [`identity`]: identity stitching (anonymous visitors joined to known persons, transitively).

pub mod channel;
pub mod clock;
pub mod identity;
pub mod ingest;
pub mod json;
pub mod message;
pub mod touchpoint;

pub use channel::ChannelRules;
pub use identity::IdentityGraph;
pub use message::{IpPolicy, MessageError, MessageType, NormalizeOptions};
pub use touchpoint::Touchpoint;

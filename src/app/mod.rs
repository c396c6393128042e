//! The application context the Lambda handlers and the command line share: the clients built once
//! per process ([`Env`], over the settings of [`crate::settings`]) and how a run is started
//! ([`start`]). The AWS calls themselves live in the adapter rooms (`blob`, `notify`, `workflow`,
//! `secrets`) and MongoDB's in `store`.

mod context;
mod start;

pub use context::Env;
pub use start::{
    is_reapply, mode_of, run_id, run_input, wanted, ObjectRef, RunInput, WANTED_SUFFIXES,
};

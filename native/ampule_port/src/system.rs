//! System containers (LXC templates, their own init, the console): see issue 4.

use std::sync::Arc;

use crate::dispatch::Server;
use crate::etf::Out;
use crate::protocol::{atom, error, CreateOpts};

/// Open consoles of system containers.
#[derive(Default)]
pub struct Consoles;

impl Consoles {
    pub fn close(&self, _name: &str) {}
}

pub async fn create(_srv: Arc<Server>, _opts: CreateOpts) -> Out {
    error(atom("not_supported"))
}

pub async fn start(_srv: Arc<Server>, _name: &str) -> Out {
    error(atom("not_supported"))
}

pub async fn stop(_srv: Arc<Server>, _name: &str) -> Out {
    error(atom("not_supported"))
}

pub async fn console_write(_srv: Arc<Server>, _name: &str, _data: Vec<u8>) -> Out {
    error(atom("not_supported"))
}

pub fn console_ack(_srv: &Server, _name: &str, _n: usize) -> Out {
    error(atom("not_supported"))
}

pub async fn destroy_files(_srv: &Server, _name: &str) {}

//! `kubectl whatsapp`: a kubectl plugin for WhatsAppSessions (docs/kubectl-plugin.md). It talks
//! to the Kubernetes API with the user's kubeconfig and RBAC only, and writes the same spec
//! requests the hub writes (docs/design.md §2).

pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod follow;
pub mod lang;
pub mod render;
pub mod requests;
pub mod view;

//! One test binary (one link step) with a module per outside program.
mod audit_rotation;
mod ca_cli;
mod client_revocation;
mod crash;
mod fairness;
mod grpc_http;
mod header_attacks;
mod lifecycle;
mod nginx;
mod openssl;
mod path_confusion;
mod pkcs12;
mod probe;
mod proxy;
mod revocation;
mod upstream_tls;
mod websocket;

pub mod config; pub mod wire; pub mod zone;

//! The bus centre's core over a simulated network.

//! Miniport drivers: ram, file, null.

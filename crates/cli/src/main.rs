//! The `scsiport` command.
#![forbid(unsafe_code)]

fn main() {
    println!("scsiport");
}

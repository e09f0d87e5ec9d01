//! The kill -9 durability check (being written).

#[derive(clap::Args, Clone)]
pub struct CrashArgs {}

pub async fn run(_args: &CrashArgs) -> i32 {
    eprintln!("crash scenario: not written yet");
    2
}

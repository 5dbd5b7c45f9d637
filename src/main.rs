//! The `flashsale` binary: read the configuration, set up logging, run.

use flashsale::config::Config;
use flashsale::run::{run, Command, USAGE};

#[tokio::main]
async fn main() {
    let arg = std::env::args().nth(1);
    let Some(command) = Command::parse(arg.as_deref()) else {
        eprintln!("{USAGE}");
        std::process::exit(
            if matches!(arg.as_deref(), Some("-h" | "--help" | "help")) {
                0
            } else {
                2
            },
        );
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flashsale: {e}");
            std::process::exit(2);
        }
    };
    flashsale::telemetry::init(config.log_json);
    if let Err(e) = run(command, config).await {
        eprintln!("flashsale: {e:#}");
        std::process::exit(1);
    }
}

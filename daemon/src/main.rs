//! The `kaigo-relay` binary: everything is in the library; see `cli`.

fn main() -> std::process::ExitCode {
    kaigo_relay::cli::main()
}

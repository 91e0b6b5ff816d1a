//! The `gsmgw` binary: parses the command line and hands over to [`gsmgw::cli`].

fn main() -> std::process::ExitCode {
    gsmgw::cli::main()
}

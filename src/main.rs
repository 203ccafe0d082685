fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(cutover::cli::main().code())
}

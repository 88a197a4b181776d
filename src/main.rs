fn main() -> std::process::ExitCode {
    edgeguard::cli::main()
}

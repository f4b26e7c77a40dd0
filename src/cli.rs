//! Command-line definitions (clap). Each subcommand explains itself in one line of `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sitecar",
    version,
    about = "Run an App Service sidecar stack on one host: a front door on 80/8080 and a supervisor for main and its sidecars"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a spec and list every problem with its JSON path (exit 0 valid, 1 invalid, 2 unreadable).
    Validate(ValidateArgs),
    /// Start the stack of a spec (or the embedded demo stack when none is given) behind the front door.
    Up(UpArgs),
    /// Run the front door alone in front of an app that is already running.
    Proxy(Box<ProxyArgs>),
    /// Show the containers of a running sitecar, like `docker compose ps`.
    Status(AdminArgs),
    /// Print the log lines of a running sitecar's containers, with compose-style prefixes.
    Logs(LogsArgs),
    /// Ask a running sitecar to re-read its spec.
    Reload(AdminArgs),
    /// Stop a running sitecar's stack in order (main, then the sidecars), like `docker compose down`.
    Down(TargetArgs),
    /// Restart containers of a running sitecar by name.
    Restart(RestartArgs),
    /// Write the spec for another platform (kubernetes, azure).
    Export(ExportArgs),
    /// Turn another format (compose) into a sitecar spec.
    Import(ImportArgs),
    /// Print shell completions (bash, zsh, fish), e.g. `source <(sitecar completions bash)`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or with --dir write one page per subcommand
    /// (sitecar.1, sitecar-up.1, ...), e.g. `sitecar man --dir /usr/local/share/man/man1`.
    Man(ManArgs),
    /// Demo main app of the embedded stack (used by `sitecar up` without a spec).
    #[command(hide = true)]
    DemoApp(DemoArgs),
    /// Demo sidecar of the embedded stack: a small counter service.
    #[command(hide = true)]
    DemoSidecar(DemoArgs),
}

/// What the spec is loaded with besides itself: app settings, template parameters, main's code.
#[derive(Debug, Args, Clone, Default)]
pub struct SettingArgs {
    /// An app setting, NAME=VALUE (repeatable); wins over the spec's own and the environment's.
    #[arg(long = "setting", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// An ARM template's parameters file, as `az deployment group create --parameters @FILE`
    /// takes it (repeatable; later files win).
    #[arg(long = "parameters", value_name = "FILE")]
    pub parameter_files: Vec<PathBuf>,
    /// One ARM template parameter, NAME=VALUE (repeatable; wins over the files).
    #[arg(long = "parameter", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub parameters: Vec<(String, String)>,
    /// For a site whose main is its own code (a runtime stack like PYTHON|3.12): the command that
    /// runs it here, e.g. "gunicorn app:app".
    #[arg(long = "main", value_name = "COMMAND")]
    pub main: Option<String>,
    /// The port that code listens on (with --main; default 8000).
    #[arg(long = "main-port", value_name = "PORT", requires = "main")]
    pub main_port: Option<u16>,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got \"{s}\"")),
    }
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The spec: an az sitecontainers spec file, an ARM template, or a sitecar document.
    pub file: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: SettingArgs,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The spec; without one, the embedded demo stack runs.
    pub file: Option<PathBuf>,
    /// Re-read the spec whenever the file changes (as `sitecar reload` or SIGHUP do).
    #[arg(long, requires = "file")]
    pub watch: bool,
    #[command(flatten)]
    pub settings: SettingArgs,
    /// Front-door listen addresses, replacing the spec's (repeatable).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Admin API address, replacing the spec's.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The running app to forward to, e.g. 127.0.0.1:3000.
    #[arg(long, value_name = "ADDR")]
    pub to: SocketAddr,
    /// Listen addresses (repeatable; default 0.0.0.0:8080).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// A sitecar document whose proxy, cache, offload and admin sections apply.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Access log format: common, json or off.
    #[arg(long, value_name = "FORMAT")]
    pub access_log: Option<String>,
    /// Serve the admin API (metrics, status) on this address, e.g. 127.0.0.1:9901.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// A TLS listener (needs --cert and --key), e.g. 0.0.0.0:8443.
    #[arg(long, value_name = "ADDR", requires_all = ["cert", "key"])]
    pub tls_listen: Option<String>,
    /// PEM certificate chain for --tls-listen (reloaded when the file changes).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-listen.
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
    /// Turn on the shared HTTP cache (RFC 9111) in memory.
    #[arg(long)]
    pub cache: bool,
    /// Bound of the cache in bytes (default 256 MiB).
    #[arg(long, value_name = "BYTES", requires = "cache")]
    pub cache_max_bytes: Option<u64>,
    /// Largest response the cache keeps, in bytes (default 8 MiB).
    #[arg(long, value_name = "BYTES", requires = "cache")]
    pub cache_max_object_bytes: Option<u64>,
    /// Serve files under PREFIX from DIR at the edge; a missing file goes on to the app
    /// (repeatable), e.g. /static=./public.
    #[arg(long, value_name = "PREFIX=DIR", value_parser = parse_offload)]
    pub offload: Vec<(String, PathBuf)>,
    /// As --offload, but a missing file is a 404 instead of going on to the app.
    #[arg(long, value_name = "PREFIX=DIR", value_parser = parse_offload)]
    pub offload_only: Vec<(String, PathBuf)>,
    /// Do not compress the app's responses.
    #[arg(long)]
    pub no_compression: bool,
    /// Export a span per request to this OTLP/HTTP collector (e.g. http://localhost:4318).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Send gRPC requests from HTTP/2 clients to the app over HTTP/2 (h2c) on this port of the
    /// --to host (App Service's http20ProxyFlag 2 with HTTP20_ONLY_PORT).
    #[arg(long, value_name = "PORT", conflicts_with = "http2_port")]
    pub grpc_port: Option<u16>,
    /// Send every HTTP/2 client's request to the app over HTTP/2 (h2c) on this port
    /// (http20ProxyFlag 1).
    #[arg(long, value_name = "PORT")]
    pub http2_port: Option<u16>,
    /// What serves HTTP/1.x clients: sitecar (its own codec, the default) or hyper.
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
}

impl ProxyArgs {
    /// The flags that change settings, for `sitecar_config::standalone`.
    pub fn flags(&self) -> sitecar_config::standalone::Flags {
        sitecar_config::standalone::Flags {
            listen: self.listen.clone(),
            threads: self.threads,
            access_log: self.access_log.clone(),
            tls: match (&self.tls_listen, &self.cert, &self.key) {
                (Some(l), Some(c), Some(k)) => Some((l.clone(), c.clone(), k.clone())),
                _ => None,
            },
            cache: self.cache,
            cache_max_bytes: self.cache_max_bytes,
            cache_max_object_bytes: self.cache_max_object_bytes,
            offload: self.offload.clone(),
            offload_only: self.offload_only.clone(),
            no_compression: self.no_compression,
            otlp_endpoint: self.otlp_endpoint.clone(),
            engine: self.engine.clone(),
            http2_to_main: match (self.grpc_port, self.http2_port) {
                (Some(p), _) => Some((sitecar_config::Http2ToMain::GrpcOnly, p)),
                (None, Some(p)) => Some((sitecar_config::Http2ToMain::All, p)),
                (None, None) => None,
            },
        }
    }
}

fn parse_offload(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((prefix, dir)) if prefix.starts_with('/') && !dir.is_empty() => Ok((prefix.to_owned(), PathBuf::from(dir))),
        _ => Err(format!("expected PREFIX=DIR with PREFIX starting with /, got \"{s}\"")),
    }
}

/// Which running stack: by default the one whose run file is under `./.sitecar`.
#[derive(Debug, Args, Default)]
pub struct TargetArgs {
    /// The spec the stack was started from (its run file under the storage root tells where it
    /// is).
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    pub file: Option<PathBuf>,
    /// Admin API of the running instance (instead of finding it), e.g. 127.0.0.1:9901.
    #[arg(long, value_name = "ADDR", conflicts_with = "file")]
    pub admin: Option<String>,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Containers to show (default: all).
    pub names: Vec<String>,
    /// Keep following new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// The spec the stack was started from (`-f` is --follow here, as in `docker compose logs`).
    #[arg(long = "file", value_name = "SPEC")]
    pub file: Option<PathBuf>,
    /// Admin API of the running instance (instead of finding it), e.g. 127.0.0.1:9901.
    #[arg(long, value_name = "ADDR", conflicts_with = "file")]
    pub admin: Option<String>,
}

impl LogsArgs {
    pub fn target(&self) -> TargetArgs {
        TargetArgs { file: self.file.clone(), admin: self.admin.clone() }
    }
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Containers to restart.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Target: kubernetes (manifests for `kubectl apply -f`) or azure (the file
    /// `az webapp sitecontainers create --sitecontainers-spec-file` takes).
    pub target: ExportTarget,
    /// The spec to export.
    pub file: PathBuf,
    /// With azure: an ARM template of sitecontainers resources (and the app settings) instead.
    #[arg(long)]
    pub arm: bool,
    /// The app's name: Kubernetes object names and the ARM template's siteName (default: the
    /// spec's local.siteName, else the spec file's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// With kubernetes: yaml (default) or json.
    #[arg(short = 'o', long = "output", value_name = "FORMAT", default_value = "yaml", value_parser = ["yaml", "json"])]
    pub output: String,
    /// With azure: write sitecontainers.json, appsettings.json and connectionstrings.json here
    /// (for `az webapp sitecontainers create` and `az webapp config ... set --settings @FILE`).
    #[arg(long, value_name = "DIR", conflicts_with = "arm")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportTarget {
    Kubernetes,
    Azure,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Source format.
    pub format: ImportFormat,
    /// The file to import (e.g. compose.yaml).
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ImportFormat {
    Compose,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write sitecar.1 and a page per subcommand into this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish (also elvish, powershell).
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port to listen on (default: $PORT).
    #[arg(long, env = "PORT")]
    pub port: u16,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        // clap checks flag names (a short option used twice, ...) only when a subcommand is parsed.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}

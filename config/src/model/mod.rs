//! The validated spec: what the other crates run. Built only by [`crate::load`], never by hand,
//! so holding a [`Spec`] means every rule of [`crate::validate`] held.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod front;
pub use front::*;

/// Which of the accepted inputs a spec came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpecFormat {
    /// `az webapp sitecontainers create --sitecontainers-spec-file`: an array of `{name, properties}`.
    AzureCli,
    /// An ARM template with `Microsoft.Web/sites/sitecontainers` resources.
    ArmTemplate,
    /// A sitecar document: `{"sitecontainers": [...], "appSettings": {...}, ...}`.
    Sitecar,
}

/// A value that must never be printed: registry passwords, connection strings, admin tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// A validated spec. Immutable: share it behind an `Arc`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Spec {
    pub format: SpecFormat,
    /// Containers in spec order: sidecars start in this order, and stop in the reverse one.
    pub containers: Vec<Container>,
    /// App settings: the document's, then those handed in from outside (outside wins).
    pub app_settings: BTreeMap<String, String>,
    pub connection_strings: BTreeMap<String, ConnectionString>,
    /// Platform behaviour that App Service reads from app settings (`WEBSITE_WARMUP_PATH`, ...).
    pub platform: Platform,
    pub proxy: ProxySettings,
    pub health: HealthSettings,
    pub cache: CacheSettings,
    pub offload: Vec<OffloadRule>,
    pub admin: AdminSettings,
    pub tracing: TracingSettings,
    pub local: LocalSettings,
    /// How containers run, after `auto` was resolved.
    pub runtime: Runtime,
    /// What is valid but not what the spec seems to say (a setting the platform overrides, the
    /// runtime `auto` chose and why): shown by `validate` and at `up`, never refused.
    pub warnings: Vec<crate::Problem>,
}

impl Spec {
    /// The one container with `isMain: true`.
    pub fn main(&self) -> &Container {
        // validate() guarantees exactly one main; index 0 is never reached for a valid spec.
        self.containers.iter().find(|c| c.is_main).unwrap_or(&self.containers[0])
    }

    /// Sidecars in spec order.
    pub fn sidecars(&self) -> impl Iterator<Item = &Container> {
        self.containers.iter().filter(|c| !c.is_main)
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Ports the front door and admin API own on the host: no process-mode container may take them.
    pub fn reserved_ports(&self) -> Vec<(u16, &'static str)> {
        reserved_ports(&self.proxy, &self.admin)
    }
}

/// Ports the front door and admin API own on the host, each with its owner as a person reads it.
pub fn reserved_ports(proxy: &ProxySettings, admin: &AdminSettings) -> Vec<(u16, &'static str)> {
    let mut ports: Vec<(u16, &'static str)> = proxy.listen.iter().map(|a| (a.port(), "the front door")).collect();
    if let Some(tls) = &proxy.tls {
        ports.push((tls.listen.port(), "the TLS front door"));
    }
    ports.push((admin.listen.port(), ADMIN_OWNER));
    ports
}

/// The owner [`reserved_ports`] names for the admin API's port.
pub const ADMIN_OWNER: &str = "the admin API";

/// One container of the spec (Azure's `SiteContainer`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Container {
    pub name: String,
    pub image: String,
    pub is_main: bool,
    pub target_port: Option<u16>,
    pub startup_command: Option<String>,
    pub auth: Auth,
    /// Default true, as on Azure: false means no app settings or connection strings but those
    /// the container's own `environmentVariables` name.
    pub inherit_app_settings: bool,
    pub volume_mounts: Vec<VolumeMount>,
    pub environment_variables: Vec<EnvReference>,
    /// How to run it without an OCI runtime (from `local.containers` or `local.images`).
    pub local: Option<LocalCommand>,
}

impl Container {
    /// The command a process runtime runs: the local mapping first, then `startUpCommand`.
    pub fn process_command(&self) -> Option<&str> {
        self.local.as_ref().and_then(|l| l.command.as_deref()).or(self.startup_command.as_deref())
    }
}

/// How the image registry is reached (`authType` and the fields it needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Anonymous,
    UserCredentials { user_name: String, password_secret: Secret },
    SystemIdentity,
    UserAssigned { client_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// Logical directory shared by every container naming the same subpath.
    pub volume_sub_path: String,
    pub container_mount_path: String,
    pub read_only: bool,
    /// Configuration data written into the volume.
    pub data: Option<String>,
}

/// `{name, value}`: the variable `name` gets the app setting *named* `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvReference {
    pub name: String,
    pub app_setting: String,
}

/// The typed connection strings of App Service and the prefix each gets in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ConnectionType {
    SQLServer,
    SQLAzure,
    MySql,
    PostgreSQL,
    Custom,
    NotificationHub,
    ServiceBus,
    EventHub,
    DocDb,
    RedisCache,
}

impl ConnectionType {
    pub const ALL: [ConnectionType; 10] = [
        Self::SQLServer,
        Self::SQLAzure,
        Self::MySql,
        Self::PostgreSQL,
        Self::Custom,
        Self::NotificationHub,
        Self::ServiceBus,
        Self::EventHub,
        Self::DocDb,
        Self::RedisCache,
    ];

    pub fn env_prefix(self) -> &'static str {
        match self {
            Self::SQLServer => "SQLCONNSTR_",
            Self::SQLAzure => "SQLAZURECONNSTR_",
            Self::MySql => "MYSQLCONNSTR_",
            Self::PostgreSQL => "POSTGRESQLCONNSTR_",
            Self::Custom => "CUSTOMCONNSTR_",
            Self::NotificationHub => "NOTIFICATIONHUBCONNSTR_",
            Self::ServiceBus => "SERVICEBUSCONNSTR_",
            Self::EventHub => "EVENTHUBCONNSTR_",
            Self::DocDb => "DOCDBCONNSTR_",
            Self::RedisCache => "REDISCACHECONNSTR_",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::SQLServer => "SQLServer",
            Self::SQLAzure => "SQLAzure",
            Self::MySql => "MySql",
            Self::PostgreSQL => "PostgreSQL",
            Self::Custom => "Custom",
            Self::NotificationHub => "NotificationHub",
            Self::ServiceBus => "ServiceBus",
            Self::EventHub => "EventHub",
            Self::DocDb => "DocDb",
            Self::RedisCache => "RedisCache",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub value: Secret,
    pub kind: ConnectionType,
}

/// Platform behaviour App Service takes from app settings; defaults as documented for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `WEBSITE_WARMUP_PATH`, default `/robots933456.txt`.
    pub warmup_path: String,
    /// `WEBSITE_WARMUP_STATUSES`: empty means any response counts as ready.
    pub warmup_statuses: Vec<u16>,
    /// `WEBSITES_CONTAINER_START_TIME_LIMIT`, default 230 s, 10-1800.
    pub start_time_limit: Duration,
    /// `WEBSITE_HEALTHCHECK_PATH`: turns on a liveness probe of main.
    pub healthcheck_path: Option<String>,
    /// `WEBSITES_ENABLE_APP_SERVICE_STORAGE`, default true: the shared `/home`.
    pub app_service_storage: bool,
    /// `HTTP20_ONLY_PORT`: the port where main speaks HTTP/2 without TLS (h2c), for
    /// [`ProxySettings::http2_to_main`].
    pub http20_only_port: Option<u16>,
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            warmup_path: "/robots933456.txt".into(),
            warmup_statuses: Vec::new(),
            start_time_limit: Duration::from_secs(230),
            healthcheck_path: None,
            app_service_storage: true,
            http20_only_port: None,
        }
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProbeKind {
    /// The port accepts a TCP connection.
    #[default]
    Tcp,
    /// A GET of `path` answers 200-399.
    Http { path: String },
}

/// Probe settings with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    pub kind: ProbeKind,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            kind: ProbeKind::Tcp,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
        }
    }
}

/// The `health` section: defaults for every container, then per-container overrides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthSettings {
    pub defaults: ProbeSettings,
    pub containers: BTreeMap<String, ProbeSettings>,
}

impl HealthSettings {
    pub fn for_container(&self, name: &str) -> &ProbeSettings {
        self.containers.get(name).unwrap_or(&self.defaults)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// Default `127.0.0.1:9901`.
    pub listen: SocketAddr,
    /// Required when `listen` is not a loopback address.
    pub token: Option<Secret>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 9901)), token: None }
    }
}

/// W3C trace context at the edge and the export of one span per request (`tracing` section).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Export spans over OTLP/HTTP; none by default.
    pub otlp: Option<OtlpSettings>,
    /// `service.name` of the exported spans (default `sitecar`).
    pub service_name: String,
    /// Share of new traces (requests without a valid `traceparent`) marked sampled, 0 to 1
    /// (default 1). A client's own sampling decision is always kept.
    pub sample_ratio: f64,
}

impl Default for TracingSettings {
    fn default() -> Self {
        Self { otlp: None, service_name: "sitecar".into(), sample_ratio: 1.0 }
    }
}

/// Where spans go: an OTLP/HTTP collector, usually a sidecar on `localhost:4318`.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// The traces URL (`http://localhost:4318/v1/traces`); a bare `http://host:port` gets
    /// `/v1/traces`, as OTLP's base endpoint does.
    pub endpoint: String,
    /// Extra request headers (an API key): values are secrets.
    pub headers: Vec<(String, Secret)>,
    /// Bound of one export request (default 10 s).
    pub timeout: Duration,
}

/// How containers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Child processes sharing the host's localhost.
    Process,
    /// docker or podman, one shared network namespace.
    Oci,
}

/// `local.runtime` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// Process when every container has a command, else OCI.
    Auto,
    Process,
    Oci,
}

/// How one container runs locally (from `local.containers.<name>` or `local.images.<image>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalCommand {
    /// Shell command line run with `sh -c`.
    pub command: Option<String>,
    pub working_dir: Option<PathBuf>,
    /// Pins main's internal port when its targetPort is a front-door port.
    pub port: Option<u16>,
}

/// Restart backoff: `initial` doubling to `max`, reset after `reset_after` of healthy running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self { initial: Duration::from_secs(1), max: Duration::from_secs(300), reset_after: Duration::from_secs(600) }
    }
}

/// The `local` section: how an unchanged Azure spec runs on this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSettings {
    pub runtime: RuntimeChoice,
    /// `docker` or `podman`; default: whichever is found first.
    pub engine: Option<String>,
    /// Image of the container that holds the stack's network namespace under docker (default
    /// `registry.k8s.io/pause:3.10`, as Kubernetes uses); any local image that stays up works.
    pub pause_image: Option<String>,
    /// Root of the shared home and volumes (default `./.sitecar`).
    pub storage_root: PathBuf,
    /// Time between SIGTERM and SIGKILL (default 30 s).
    pub grace_period: Duration,
    pub restart: RestartPolicy,
    /// `WEBSITE_SITE_NAME` (default `sitecar`).
    pub site_name: String,
    /// `WEBSITE_HOSTNAME` (default `localhost`).
    pub hostname: String,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            runtime: RuntimeChoice::Auto,
            engine: None,
            pause_image: None,
            storage_root: PathBuf::from(".sitecar"),
            grace_period: Duration::from_secs(30),
            restart: RestartPolicy::default(),
            site_name: "sitecar".into(),
            hostname: "localhost".into(),
        }
    }
}

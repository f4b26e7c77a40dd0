//! The keys of a sitecontainer's `properties`, spelled once for the reader (`parse.rs`) and the
//! writers (`export.rs`, `compose/`).

pub const IMAGE: &str = "image";
pub const IS_MAIN: &str = "isMain";
pub const TARGET_PORT: &str = "targetPort";
pub const STARTUP_COMMAND: &str = "startUpCommand";
pub const ENVIRONMENT_VARIABLES: &str = "environmentVariables";
pub const VOLUME_MOUNTS: &str = "volumeMounts";
pub const VOLUME_SUB_PATH: &str = "volumeSubPath";
pub const CONTAINER_MOUNT_PATH: &str = "containerMountPath";
pub const READ_ONLY: &str = "readOnly";
pub const INHERIT_APP_SETTINGS: &str = "inheritAppSettingsAndConnectionStrings";
pub const AUTH_TYPE: &str = "authType";
pub const USER_NAME: &str = "userName";
pub const PASSWORD_SECRET: &str = "passwordSecret";
pub const USER_MANAGED_IDENTITY_CLIENT_ID: &str = "userManagedIdentityClientId";

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kasmina_runtime::Kasmina;
use kasmina_runtime::reexports::security::{KeyRing, sign_command};
use kasmina_server::{ControlPlane, ServerConfig};
use leyline::kasmina_control_client::KasminaControlClient;
use leyline::wkt::Timestamp;
use leyline::{AdaptationCommand, CommandType, SignedCommand};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub const SECRET: &str = "kasmina-server-test-secret";
pub const TOKEN: &str = "read-token-0123456789";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// A private (0600) copy of a fixture key: the server refuses a world-readable key.
pub fn private_key(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::write(&to, pem(name)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    to
}

pub fn kasmina() -> Kasmina {
    Kasmina::builder().signing_keys(KeyRing::with_key("default", SECRET).unwrap()).build().unwrap()
}

/// A served control plane; dropping it shuts the server down.
pub struct Served {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), kasmina_server::ServerError>>>,
}

impl Served {
    pub async fn start(config: ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let plane = ControlPlane::new(kasmina(), config);
        let task = tokio::spawn(plane.serve(listener, async {
            let _ = rx.await;
        }));
        Self { addr, stop: Some(tx), task: Some(task) }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub async fn plain(&self) -> KasminaControlClient<Channel> {
        let channel = Endpoint::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap();
        KasminaControlClient::new(channel)
    }

    /// A TLS client trusting the test CA, with an optional client identity (`client` or
    /// `rogue-client`).
    pub async fn tls(&self, identity: Option<&str>) -> Result<KasminaControlClient<Channel>, tonic::transport::Error> {
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem("ca.pem"))).domain_name("localhost");
        if let Some(name) = identity {
            tls = tls.identity(Identity::from_pem(pem(&format!("{name}.pem")), pem(&format!("{name}.key"))));
        }
        let channel = Endpoint::from_shared(format!("https://localhost:{}", self.addr.port()))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        Ok(KasminaControlClient::new(channel))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A signed command the runtime verifies and refuses at its safe point (no slot): enough to
/// exercise the command path end to end.
pub fn signed(id: &str) -> SignedCommand {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mut c = AdaptationCommand {
        version: 1,
        command_id: id.to_owned(),
        target_seed_id: "seed-x".to_owned(),
        issued_at: Some(Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }),
        issued_by: "kasmina-server-it".to_owned(),
        ..Default::default()
    };
    c.set_command_type(CommandType::CommandPause);
    sign_command(&c, "default", &KeyRing::with_key("default", SECRET).unwrap()).unwrap()
}

pub fn with_token<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

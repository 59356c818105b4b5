//! The CLI's side of fleet stores: `start FILE` asks each store its `scope = "fleet"` jobs use before
//! handing them to the daemon, so an unreachable or misconfigured store is a clear error at once (naming the
//! store, password masked, and the cause) rather than a run skipped at its first fire time. The other apps
//! start anyway.

use std::collections::BTreeMap;

use crate::config::AppSpec;
use crate::fleet::Store;

/// Pings every store the apps' fleet jobs use (one after the other, each bounded by the store's connect
/// and operation timeouts, 3 s each). Removes
/// the apps whose store did not answer and returns one error line per such store.
pub fn check_stores(apps: &mut Vec<AppSpec>) -> Vec<String> {
    let mut stores: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for app in apps.iter() {
        if let Some(fleet) = app.job.as_ref().and_then(|j| j.fleet.as_ref()) {
            stores
                .entry(fleet.store.clone())
                .or_default()
                .push(app.name.clone());
        }
    }
    if stores.is_empty() {
        return Vec::new();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return vec![format!("cannot check the fleet stores: {e}")],
    };
    let results: Vec<(String, Vec<String>, Result<(), String>)> = runtime.block_on(async {
        let asks = stores.into_iter().map(|(url, names)| async move {
            let result = match Store::new(&url) {
                Ok(store) => store.ping().await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (url, names, result)
        });
        let mut out = Vec::new();
        for ask in asks {
            out.push(ask.await);
        }
        out
    });
    let mut errors = Vec::new();
    for (_, names, result) in results {
        if let Err(error) = result {
            apps.retain(|app| !names.contains(&app.name));
            errors.push(format!(
                "{error}: not starting {} (scope = \"fleet\"); the other apps start",
                names.join(", ")
            ));
        }
    }
    errors
}

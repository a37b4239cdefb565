//! The supervisor's children: spawning a sync's writer and a source's transformer and fetcher
//! (linked, so their deaths come back as supervision events), and the registry that says which
//! sync and role an exiting actor had (refs go stale after a respawn; ids do not lie).

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorRef};
use tokio::sync::Semaphore;

use crate::actors::fetcher::{Fetcher, FetcherArgs};
use crate::actors::messages::{ChildRole, FetchPosition, FetcherMsg, SupervisorMsg, TransformerMsg, WriterMsg};
use crate::actors::transformer::{Transformer, TransformerArgs};
use crate::actors::writer::{Writer, WriterArgs};
use crate::actors::Services;
use crate::fetch::Traffic;
use crate::model::Source;
use crate::store::syncs::SyncFence;

/// Which sync and role each live child has.
#[derive(Default)]
pub struct Children {
    roles: HashMap<ActorId, (i64, ChildRole)>,
}

impl Children {
    fn add(&mut self, cell: &ActorCell, sync_id: i64, role: ChildRole) {
        self.roles.insert(cell.get_id(), (sync_id, role));
    }

    /// Forgets an exited child; its sync and role, if it was ours.
    pub fn remove(&mut self, id: ActorId) -> Option<(i64, ChildRole)> {
        self.roles.remove(&id)
    }
}

/// What spawning needs from the supervisor.
pub struct Spawner<'a> {
    pub supervisor: &'a ActorRef<SupervisorMsg>,
    pub services: &'a Services,
    pub children: &'a mut Children,
}

/// A source's actors of one generation.
pub struct SourceActors {
    pub fetcher: ActorRef<FetcherMsg>,
    pub transformer: ActorRef<TransformerMsg>,
}

impl Spawner<'_> {
    pub async fn writer(
        &mut self,
        fence: &SyncFence,
        gates: &HashMap<Source, Arc<Semaphore>>,
    ) -> Result<ActorRef<WriterMsg>, String> {
        let args = WriterArgs {
            fence: fence.clone(),
            services: self.services.clone(),
            supervisor: self.supervisor.clone(),
            gates: gates.clone(),
        };
        let (writer, _) = Actor::spawn_linked(None, Writer, args, self.supervisor.get_cell())
            .await
            .map_err(|error| format!("the writer did not start: {error}"))?;
        self.children.add(&writer.get_cell(), fence.sync_id, ChildRole::Writer);
        Ok(writer)
    }

    /// Spawns a source's transformer and fetcher of `generation`, fetching from `start` (or
    /// the source's first page).
    #[allow(clippy::too_many_arguments)]
    pub async fn source(
        &mut self,
        sync_id: i64,
        source: Source,
        generation: u32,
        start: Option<FetchPosition>,
        writer: ActorRef<WriterMsg>,
        gate: Arc<Semaphore>,
        traffic: Arc<Traffic>,
    ) -> Result<SourceActors, String> {
        let transformer_args = TransformerArgs {
            writer,
            supervisor: self.supervisor.clone(),
        };
        let (transformer, _) = Actor::spawn_linked(None, Transformer, transformer_args, self.supervisor.get_cell())
            .await
            .map_err(|error| format!("the transformer did not start: {error}"))?;
        self.children.add(
            &transformer.get_cell(),
            sync_id,
            ChildRole::Transformer(source, generation),
        );
        let fetcher_args = FetcherArgs {
            sync_id,
            source,
            services: self.services.clone(),
            gate,
            transformer: transformer.clone(),
            supervisor: self.supervisor.clone(),
            generation,
            start,
            traffic,
        };
        let fetcher = match Actor::spawn_linked(None, Fetcher, fetcher_args, self.supervisor.get_cell()).await {
            Ok((fetcher, _)) => fetcher,
            Err(error) => {
                transformer.kill();
                return Err(format!("the fetcher did not start: {error}"));
            }
        };
        self.children
            .add(&fetcher.get_cell(), sync_id, ChildRole::Fetcher(source, generation));
        Ok(SourceActors { fetcher, transformer })
    }
}

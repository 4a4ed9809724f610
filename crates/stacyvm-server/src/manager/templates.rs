//! Templates: named spawn presets kept in the store.

use stacyvm_core::template::valid_template_name;
use stacyvm_core::{OwnerId, Sandbox, Template};
use stacyvm_store::StoreError;

use super::{Manager, ManagerError};
use crate::api::model::{SpawnRequest, TemplateRequest, TemplateSpawnRequest};

fn not_found(name: &str) -> impl Fn(StoreError) -> ManagerError + '_ {
    move |e| match e {
        StoreError::NotFound(_) => ManagerError::NotFound(format!("template {name}")),
        StoreError::Conflict(_) => {
            ManagerError::Conflict(format!("template {name} already exists"))
        }
        other => other.into(),
    }
}

impl Manager {
    fn check_template(&self, req: &TemplateRequest) -> Result<(), ManagerError> {
        if !valid_template_name(&req.name) {
            return Err(ManagerError::BadRequest(format!(
                "invalid template name {:?} (letters, digits, '-', '_', '.')",
                req.name
            )));
        }
        if !req.provider.is_empty() && !self.inner.providers.contains_key(&req.provider) {
            return Err(ManagerError::BadRequest(format!(
                "provider {:?} is not configured",
                req.provider
            )));
        }
        let max = self.inner.limits.max_ttl;
        if let Some(ttl) = req.ttl
            && !max.is_zero()
            && ttl > max
        {
            return Err(ManagerError::limit(format!(
                "ttl {ttl} exceeds the maximum of {max}"
            )));
        }
        Ok(())
    }

    pub async fn create_template(&self, req: TemplateRequest) -> Result<Template, ManagerError> {
        self.check_template(&req)?;
        let now = self.inner.clock.now();
        let t = Template {
            name: req.name,
            image: req.image,
            provider: req.provider,
            memory_mb: req.memory_mb,
            vcpus: req.vcpus,
            ttl: req.ttl,
            metadata: req.metadata,
            created_at: now,
            updated_at: now,
        };
        self.inner
            .store
            .create_template(&t)
            .await
            .map_err(not_found(&t.name))?;
        Ok(t)
    }

    pub async fn update_template(
        &self,
        name: &str,
        mut req: TemplateRequest,
    ) -> Result<Template, ManagerError> {
        req.name = name.to_string();
        self.check_template(&req)?;
        let old = self.get_template(name).await?;
        let t = Template {
            name: req.name,
            image: req.image,
            provider: req.provider,
            memory_mb: req.memory_mb,
            vcpus: req.vcpus,
            ttl: req.ttl,
            metadata: req.metadata,
            created_at: old.created_at,
            updated_at: self.inner.clock.now(),
        };
        self.inner
            .store
            .update_template(&t)
            .await
            .map_err(not_found(name))?;
        Ok(t)
    }

    pub async fn get_template(&self, name: &str) -> Result<Template, ManagerError> {
        self.inner
            .store
            .get_template(name)
            .await
            .map_err(not_found(name))
    }

    pub async fn list_templates(&self) -> Result<Vec<Template>, ManagerError> {
        Ok(self.inner.store.list_templates().await?)
    }

    pub async fn delete_template(&self, name: &str) -> Result<(), ManagerError> {
        self.inner
            .store
            .delete_template(name)
            .await
            .map_err(not_found(name))
    }

    pub async fn spawn_template(
        &self,
        name: &str,
        overrides: TemplateSpawnRequest,
        header_owner: Option<&OwnerId>,
    ) -> Result<Sandbox, ManagerError> {
        let req = SpawnRequest {
            template: Some(name.to_string()),
            ttl: overrides.ttl,
            provider: overrides.provider,
            owner_id: overrides.owner_id,
            metadata: overrides.metadata,
            ..SpawnRequest::default()
        };
        self.spawn(&req, header_owner).await
    }
}

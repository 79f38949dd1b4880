//! Product views as answers show them, written once and kept (bounded) for the answers after.
//!
//! A listing or search of 20 writes about 20 KB of JSON, most of it the products' own text:
//! names and descriptions in two languages, tags, specs and image lists. `perf` of listings
//! through the gateway put about a third of product-service's CPU in writing it (string
//! escaping alone a fifth), every time, although a product's view changes only when the
//! product does. So the view of a product is kept, as the JSON bytes the answer holds, under
//! the product's id, its `version` and the language it is shown in: every change (a stock
//! change included) is a new version, which is a new key, so a kept view is never stale and
//! nothing has to be invalidated; an old version's view is simply never asked for again and
//! ages out. (This is the contract the read model already rests on: one version of a product
//! is one content, so it applies a snapshot only when its version is newer.)
//!
//! The memory is bounded ([`RENDERED_VIEWS_BYTES`]), not one view per product: at 100,000
//! products every view would add about 100 MB. What a shop's traffic reads repeatedly (the
//! first pages of its categories, popular products and searches) stays; a product not kept
//! costs what it cost before. `catalog_rendered_views_total{source="kept"|"written"}` counts
//! both.

use std::sync::Arc;

use anyhow::Context as _;
use contracts::product::ProductSnapshot;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::products::ProductViewRef;
use crate::domain::language;

/// At most this many bytes of views are kept (each counted as its JSON plus
/// [`ENTRY_OVERHEAD_BYTES`]).
pub const RENDERED_VIEWS_BYTES: u64 = 2 * 1024 * 1024;

/// What the cache itself holds per view besides the JSON (key, reference count, its entry).
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// A product version as shown in a language (`None`: its base texts).
type ViewKey = (Uuid, i64, Option<&'static str>);

/// The kept views; cheap to clone (shared).
#[derive(Clone)]
pub struct RenderedViews {
    kept: moka::sync::Cache<ViewKey, Arc<RawValue>>,
}

impl RenderedViews {
    /// Keeps at most `bytes` of views.
    pub fn new(bytes: u64) -> Self {
        Self {
            kept: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|_key: &ViewKey, view: &Arc<RawValue>| {
                    u32::try_from(view.get().len() + ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }

    /// The JSON of `product` as a reader of `lang` sees it ([`ProductViewRef::of`]): the kept
    /// one, else written now and kept.
    pub fn of(
        &self,
        product: &ProductSnapshot,
        lang: Option<&'static str>,
    ) -> anyhow::Result<Arc<RawValue>> {
        // Keyed by the language the view is shown in, not the one asked for: a product
        // without a zh-CN translation has one view for both.
        let shown = language::shown(product, lang).lang;
        let key = (product.id, product.version, shown);
        if let Some(view) = self.kept.get(&key) {
            metrics::counter!("catalog_rendered_views_total", "source" => "kept").increment(1);
            return Ok(view);
        }
        let view: Arc<RawValue> =
            serde_json::value::to_raw_value(&ProductViewRef::of(product, shown))
                .context("writing a product view")?
                .into();
        metrics::counter!("catalog_rendered_views_total", "source" => "written").increment(1);
        self.kept.insert(key, Arc::clone(&view));
        Ok(view)
    }
}

impl Default for RenderedViews {
    fn default() -> Self {
        Self::new(RENDERED_VIEWS_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::super::products::view_tests::product as test_product;
    use super::*;

    /// The test kettle (translated into zh-CN) at `version`, with `available` units.
    fn product(version: i64, available: i64) -> ProductSnapshot {
        let mut product = test_product(&[("zh-CN", "电热水壶", "不锈钢，1.7 升")]);
        product.version = version;
        product.stock.available = available;
        product
    }

    fn written(product: &ProductSnapshot, lang: Option<&str>) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&ProductViewRef::of(product, lang))?)
    }

    #[test]
    fn a_kept_view_is_the_view_written_afresh_in_each_language() -> anyhow::Result<()> {
        let views = RenderedViews::default();
        let kettle = product(3, 5);
        for lang in [None, Some("en"), Some("zh-CN")] {
            let first = views.of(&kettle, lang)?;
            let again = views.of(&kettle, lang)?;
            assert_eq!(first.get(), written(&kettle, lang)?);
            assert_eq!(again.get(), first.get());
        }
        // zh-CN shows the translation; en (no translation) the base texts, kept once for both.
        assert!(views.of(&kettle, Some("zh-CN"))?.get().contains("电热水壶"));
        assert!(Arc::ptr_eq(
            &views.of(&kettle, Some("en"))?,
            &views.of(&kettle, None)?
        ));
        Ok(())
    }

    #[test]
    fn a_new_version_is_written_again_never_served_stale() -> anyhow::Result<()> {
        let views = RenderedViews::default();
        let before = product(3, 5);
        let after = product(4, 0);
        assert!(views.of(&before, None)?.get().contains("\"available\":5"));
        let view = views.of(&after, None)?;
        assert_eq!(view.get(), written(&after, None)?);
        assert!(view.get().contains("\"available\":0"));
        Ok(())
    }

    #[test]
    fn the_kept_views_stay_within_their_bound() -> anyhow::Result<()> {
        let bound = 64 * 1024;
        let views = RenderedViews::new(bound);
        let mut kettle = product(1, 5);
        for version in 1..=2_000 {
            kettle.version = version;
            views.of(&kettle, None)?;
        }
        views.kept.run_pending_tasks();
        assert!(views.kept.weighted_size() <= bound);
        assert!(views.kept.entry_count() > 0);
        Ok(())
    }
}

"""Everything a handler needs, built once per app and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass

from app.amp_cors import AmpCors
from app.auth import ApiKeys
from app.campaigns.tracking import Tracker
from app.events.ingest import Ingest
from app.events.privacy import Erasure, ReaderHashes
from app.fallbacks import Fallbacks
from app.feeds import FEEDS
from app.images import KINDS, ImageChecks
from app.images.service import LiveImages
from app.links import LinkSigner
from app.metrics import Metrics
from app.picks import Picks
from app.profiles.cache import CachedProfiles
from app.ratelimit import RateLimits
from app.reader import ReaderData
from app.reader.catalog import Catalog
from app.recs.cooccurrence import CoOccurrence
from app.recs.recommender import Recommender
from app.recs.upstream import UpstreamModel
from app.render.engine import Engine
from app.render.registry import TemplateRegistry
from app.render.renderer import Renderer
from app.segments.service import Segmenter, load_rules_file
from app.segments.sweep import Sweep
from app.settings import Settings
from app.stores.bundle import Stores, build_stores
from app.studio.ampcheck import AmpCheck
from app.studio.preview import Previews
from app.tokens import Tokens


@dataclass(frozen=True)
class Services:
    settings: Settings
    stores: Stores
    metrics: Metrics
    tokens: Tokens
    api_keys: ApiKeys
    profiles: CachedProfiles
    catalog: Catalog
    reader: ReaderData
    signer: LinkSigner
    fallbacks: Fallbacks
    amp_cors: AmpCors
    renderer: Renderer
    picks: Picks
    images: LiveImages
    ingest: Ingest
    erasure: Erasure
    tracker: Tracker
    segments: Segmenter
    sweep: Sweep
    cooccurrence: CoOccurrence
    amp_check: AmpCheck
    previews: Previews
    limits: RateLimits


def build_services(settings: Settings, stores: Stores | None = None) -> Services:
    """`stores` overrides the backend chosen by the settings."""
    stores = stores or build_stores(settings)
    metrics = Metrics(settings.metrics_dir, stores.backend.circuit)
    tokens = Tokens(settings.secret_keys)
    profiles = CachedProfiles(
        stores.profiles,
        stores.bus,
        metrics,
        erase=stores.erase,
        ttl_s=settings.cache_ttl_s,
        size=settings.cache_size,
        retry_s=settings.store_retry_ms / 1000,
        written_size=settings.events_warm_readers,
    )
    catalog = Catalog(stores.catalog)
    upstream = None
    if settings.recs_url is not None:
        upstream = UpstreamModel(
            settings.recs_url,
            settings.upstream_hosts,
            metrics,
            timeout_s=settings.recs_timeout_s,
            private_hosts=settings.upstream_private_hosts,
        )
    reader = ReaderData(catalog, recommender=Recommender(stores.recs, upstream))
    picks = Picks(stores.picks, reader, settings.budget_s)
    images = LiveImages(settings, metrics, profiles, catalog, picks)
    signer = LinkSigner(tokens, settings.public_url, ImageChecks(fonts=images.fonts))
    templates = TemplateRegistry(
        settings.blocks_dir, settings.templates_dir, reload=settings.reload_templates
    )
    templates.load()  # at start-up; with reload on, changes are compiled in the background
    engine = Engine(
        signer=signer,
        public_url=settings.public_url,
        metrics=metrics,
        globals=templates.environments.globals,
        message_domain=settings.message_id_domain,
    )
    renderer = Renderer(
        templates, engine, profiles=profiles, reader=reader, budget_s=settings.budget_s
    )
    formats = {name: kind.format for name, kind in KINDS.items()}
    hashes = ReaderHashes(settings.secret_keys)
    segments = Segmenter(
        load_rules_file(settings.segments_file), stores.events, path=settings.segments_file
    )
    profiles.live = segments.live
    ingest = Ingest(
        stores.events,
        profiles,
        hashes,
        metrics,
        max_event_bytes=settings.event_max_bytes,
        segments=segments,
        segment_store=stores.segments,
    )
    cooccurrence = CoOccurrence(stores.recs, stores.catalog, metrics, cap=settings.recs_neighbours)
    if settings.recs_cooccurrence:
        ingest.watchers.append(cooccurrence.note)
    amp_check = AmpCheck(settings.amp_validator_dir)
    return Services(
        settings=settings,
        stores=stores,
        metrics=metrics,
        tokens=tokens,
        api_keys=ApiKeys(settings.api_keys, settings.write_keys),
        profiles=profiles,
        catalog=catalog,
        reader=reader,
        signer=signer,
        fallbacks=Fallbacks(settings.fallbacks_dir, metrics, list(FEEDS), formats),
        amp_cors=AmpCors(settings.amp_senders),
        renderer=renderer,
        picks=picks,
        images=images,
        ingest=ingest,
        erasure=Erasure(stores, profiles, hashes, metrics),
        tracker=Tracker(ingest, metrics, stores.campaigns),
        segments=segments,
        sweep=Sweep(
            segments,
            stores.events,
            stores.segments,
            profiles,
            hashes,
            metrics,
            every_s=settings.segments_sweep_s,
        ),
        cooccurrence=cooccurrence,
        amp_check=amp_check,
        # One for the studio's routes (previews, tests sent): its markers compiled once.
        previews=Previews(renderer, amp_check),
        limits=RateLimits(settings, stores.rates, metrics),
    )

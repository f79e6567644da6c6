-- The least privileges of assets_pipeline's writer, role assets_pipeline_writer: rows only, no DDL.
-- Run by the tables' owner after `assets-pipeline migrate`. The role also needs
-- CONNECT on the database (PUBLIC has it unless it was revoked).
GRANT USAGE ON SCHEMA trading, data_sources TO "assets_pipeline_writer";
GRANT SELECT, INSERT, UPDATE ON trading.symbols TO "assets_pipeline_writer";
GRANT SELECT, INSERT ON data_sources.api_providers TO "assets_pipeline_writer";
GRANT SELECT, INSERT, UPDATE ON data_sources.data_sync_status TO "assets_pipeline_writer";
GRANT SELECT, INSERT, UPDATE ON trading.quote_history TO "assets_pipeline_writer";
GRANT SELECT, INSERT, UPDATE ON trading.price_bars TO "assets_pipeline_writer";
GRANT SELECT, INSERT, UPDATE ON data_sources.event_outbox TO "assets_pipeline_writer";
GRANT SELECT, INSERT, UPDATE ON data_sources.api_budget_state TO "assets_pipeline_writer";
GRANT SELECT, INSERT, DELETE ON data_sources.api_budget_calls TO "assets_pipeline_writer";
GRANT SELECT, INSERT, UPDATE ON data_sources.api_refusals TO "assets_pipeline_writer";
GRANT SELECT, INSERT, UPDATE, DELETE ON data_sources.refresh_queue TO "assets_pipeline_writer";
GRANT SELECT, INSERT ON data_sources.refresh_batches TO "assets_pipeline_writer";
GRANT SELECT ON data_sources.assets_pipeline_alembic_version TO "assets_pipeline_writer";
-- The generated ids (if the platform's tables use other sequences, grant those).
GRANT USAGE ON SEQUENCE
    data_sources.api_budget_calls_id_seq,
    data_sources.api_providers_id_seq,
    data_sources.event_outbox_id_seq,
    trading.symbols_id_seq,
    data_sources.data_sync_status_id_seq,
    trading.quote_history_id_seq
    TO "assets_pipeline_writer";

-- Keys issued before channel keys were announced on oms.channels.events: announce each once (and
-- its revoke), through the outbox, so the other services' copies (oms_platform.channel_keys) have them.
INSERT INTO outbox (topic, key, value, headers)
SELECT 'oms.channels.events', e.key_id::text,
       convert_to(jsonb_build_object(
           'event_id', gen_random_uuid(), 'event_type', e.event_type, 'event_version', 1,
           'occurred_at', now(), 'producer', 'order-capture', 'order_id', e.key_id,
           'correlation_id', e.key_id, 'causation_id', NULL, 'payload', e.payload)::text, 'UTF8'),
       jsonb_build_array(jsonb_build_array('event_type', e.event_type), jsonb_build_array('event_version', '1'),
                         jsonb_build_array('content-type', 'application/json'))
FROM (
    SELECT key_id, created_at AS at, 1 AS n, 'ChannelKeyIssued' AS event_type,
           jsonb_build_object('key_id', key_id, 'channel', channel, 'key_hash', encode(key_hash, 'hex'),
                              'issued_at', created_at) AS payload
    FROM api_keys
    UNION ALL
    SELECT key_id, revoked_at, 2, 'ChannelKeyRevoked',
           jsonb_build_object('key_id', key_id, 'channel', channel, 'revoked_at', revoked_at)
    FROM api_keys WHERE revoked_at IS NOT NULL
) e
ORDER BY e.at, e.key_id, e.n;

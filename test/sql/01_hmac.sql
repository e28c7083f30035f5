-- HMAC-SHA256: the public test vector, and agreement with pgcrypto.
\set VERBOSITY terse
SELECT usage_tracking.hmac_sha256_hex('It''s a Secret to Everybody', 'Hello, World!')
       = '757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' AS test_vector_matches;
SELECT usage_tracking.hmac_sha256_hex('It''s a Secret to Everybody', 'Hello, World!');
-- RFC 4231 test case 2
SELECT usage_tracking.hmac_sha256_hex('Jefe', 'what do ya want for nothing?');
SELECT bool_and(usage_tracking.hmac_sha256_hex(k, m) = encode(hmac(m, k, 'sha256'), 'hex')) AS agrees_with_pgcrypto
  FROM (SELECT md5(i::text) AS k, repeat(chr(65 + i % 26), i) AS m FROM generate_series(0, 200) i) s;
SELECT usage_tracking.hmac_sha256_hex(NULL, 'x') IS NULL AS strict;
-- generated secrets: 64 hex, never twice the same
SELECT count(DISTINCT s) = 20 AND bool_and(s ~ '^[0-9a-f]{64}$') AS secrets_ok
  FROM (SELECT usage_tracking.generate_secret() s FROM generate_series(1, 20)) g;

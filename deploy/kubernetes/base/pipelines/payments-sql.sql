-- The demo payments in SQL: pipelines declared in a ksqlDB-style dialect compile to the
-- same pipeline spec as the YAML beside them (`sluice explain config/pipelines/payments-sql.sql`
-- prints them as YAML). Try it offline:
--   python -m streams.offline.demo_data 5000 > payments.jsonl
--   sluice replay config/pipelines/payments-sql.sql --input payments.jsonl

-- the source: the payments topic, its columns (validated), event time and key
CREATE STREAM payments (
  payment_id VARCHAR NOT NULL,
  user_id    VARCHAR NOT NULL,
  merchant   VARCHAR NOT NULL,
  amount     DOUBLE NOT NULL,
  currency   VARCHAR NOT NULL,
  country    VARCHAR,
  card       STRUCT<number VARCHAR, scheme VARCHAR>,
  ts         TIMESTAMP NOT NULL
) WITH (KAFKA_TOPIC = 'payments', TIMESTAMP = 'ts', KEY = 'user_id');

-- payments in EUR, refunds and exotic currencies left out: topic payments-eur
CREATE STREAM payments_eur WITH (DLQ_TOPIC = 'payments-sql-dlq') AS
SELECT payment_id, user_id, merchant,
       ROUND(CASE currency WHEN 'USD' THEN amount * 0.92
                           WHEN 'GBP' THEN amount * 1.17
                           ELSE amount END, 2) AS eur,
       ts
FROM payments
WHERE amount > 0 AND currency IN ('EUR', 'USD', 'GBP');

-- per merchant and minute, read from payments-eur: topic merchant-minutes
CREATE TABLE merchant_minutes WITH (DLQ_TOPIC = 'payments-sql-dlq') AS
SELECT merchant, COUNT(*) AS payments, SUM(eur) AS total, PERCENTILE(eur, 0.9) AS p90,
       COUNT(DISTINCT user_id) AS users
FROM payments_eur
WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS)
GROUP BY merchant
HAVING COUNT(*) >= 5
EMIT FINAL;

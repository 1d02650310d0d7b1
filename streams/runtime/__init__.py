"""The runtime: everything that talks to Kafka. The only package that imports Faust or
aiokafka; the engine around it stays pure."""

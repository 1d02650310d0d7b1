"""The runtime: everything that talks to Kafka. The only package that imports aiokafka;
the engine around it stays pure."""

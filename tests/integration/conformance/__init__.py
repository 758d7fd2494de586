"""MQTT 3.1.1 / 5.0 conformance tests, written against the OASIS
specifications and run against vigil (default) or, to validate the tests
themselves, Debian's mosquitto (CONFORMANCE_BROKER=mosquitto)."""

"""What the page server, the compute and the control side share: the wire types (relations,
keys, file operations, batches and their protobuf form), the error hierarchy, the API client,
durable file writes, process supervision and small parsers. It imports only ``proto``."""

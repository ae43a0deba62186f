"""AWS wire knowledge: identify a request (service, region, operation, caller) and render
protocol-correct error responses. Driven by botocore's service models; never imports mitmproxy."""

# One image for both hosts: docker-compose.yml picks the entry point per service.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish Tsp.Seed/Tsp.Seed.csproj -c Release -o /app/seed \
 && dotnet publish Tsp.GpuNode/Tsp.GpuNode.csproj -c Release -o /app/gpunode

FROM mcr.microsoft.com/dotnet/aspnet:10.0
# curl: docker-compose's health checks GET /health/ready on the operations port.
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app /app
COPY samples /app/samples
# A 64 MB gen0 budget instead of one sized by the CPU cache: every frame a node reads is a fresh
# 64 KiB-class buffer, and with the small budget collections cost a run ~200 µs of CPU (docs/design.md,
# "Garbage collection"). The GC reads it only from the environment, not from runtimeconfig.json.
ENV DOTNET_GCgen0size=0x4000000

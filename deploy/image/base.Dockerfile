# The BASE of buildd's Dockerfile: Node.js 20 with the Debian packages buildd runs with
# (runc, CNI plugins, rootlesskit, newuidmap/newgidmap, slirp4netns, iptables). Built once,
# with network access, by buildd or any BuildKit:
#   buildctl build --frontend dockerfile.v0 --local context=deploy/image --local dockerfile=deploy/image \
#     --opt filename=base.Dockerfile --output type=image,name=registry.example.com/buildd-base:bookworm,push=true
FROM docker.io/library/node:20-bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      runc containernetworking-plugins rootlesskit uidmap slirp4netns iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && (userdel -r node 2>/dev/null || true)

# buildd's own image: the one deploy/kubernetes runs. Built from a checkout where `npm ci` and
# `npm run build` have run (the image takes dist/ and node_modules/ as they are, then drops the
# dev dependencies), by buildd itself or any BuildKit:
#   npm ci && npm run build
#   buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. \
#     --opt build-arg:BASE=registry.example.com/buildd-base:bookworm \
#     --output type=image,name=registry.example.com/buildd:0.1.0,push=true
# BASE is an image with Node.js 20 (node and npm on PATH), /bin/sh, and Debian's runc,
# containernetworking-plugins, rootlesskit, uidmap, slirp4netns and iptables:
# deploy/image/base.Dockerfile makes one from node:20-bookworm-slim.
ARG BASE=registry.example.com/buildd-base:bookworm

FROM ${BASE} AS app
WORKDIR /opt/buildd
COPY package.json package-lock.json ./
COPY node_modules/ node_modules/
# offline: removes what only the tests and the compiler need
RUN npm prune --omit=dev --offline --no-audit --no-fund --ignore-scripts >/dev/null
COPY bin/ bin/
COPY dist/ dist/
COPY buildd/api/buildd.proto buildd/api/buildd.proto

FROM ${BASE}
COPY --from=app /opt/buildd /opt/buildd
RUN ln -s /opt/buildd/bin/buildd.js /usr/local/bin/buildd \
 && ln -s /opt/buildd/bin/buildctl.js /usr/local/bin/buildctl \
 && buildd --version \
 && node -e "new (require('/opt/buildd/node_modules/better-sqlite3'))(':memory:').close()" \
 && (grep -q '^user:' /etc/passwd || (echo 'user:x:1000:1000:buildd:/home/user:/bin/sh' >> /etc/passwd && echo 'user:x:1000:' >> /etc/group)) \
 && mkdir -p /home/user/.local/share/buildd /run/user/1000 \
 && chown -R 1000:1000 /home/user /run/user/1000 \
 && echo 'user:100000:65536' > /etc/subuid && echo 'user:100000:65536' > /etc/subgid
ENV XDG_RUNTIME_DIR=/run/user/1000
USER 1000:1000
WORKDIR /home/user
ENTRYPOINT ["buildd"]
CMD ["--rootless", "--addr", "unix:///run/user/1000/buildd/buildd.sock"]

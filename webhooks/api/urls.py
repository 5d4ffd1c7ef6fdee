from django.urls import path, re_path

from jobs.api.errors import not_found

from . import views

urlpatterns = [
    path("endpoints/", views.EndpointListCreateApi.as_view(), name="api-webhook-endpoint-list"),
    path("endpoints/<int:pk>/", views.EndpointDetailApi.as_view(), name="api-webhook-endpoint-detail"),
    path("secret/", views.SecretApi.as_view(), name="api-webhook-secret"),
    path("secret/rotate", views.SecretRotateApi.as_view(), name="api-webhook-secret-rotate"),
    path("deliveries/", views.DeliveryListApi.as_view(), name="api-webhook-delivery-list"),
    path("deliveries/<uuid:delivery_id>/", views.DeliveryDetailApi.as_view(), name="api-webhook-delivery-detail"),
    path("deliveries/<uuid:delivery_id>/replay", views.DeliveryReplayApi.as_view(),
         name="api-webhook-delivery-replay"),
    # Any other path under /api/v1/webhooks/ answers in the API's error shape.
    re_path(r"^", not_found, name="api-webhook-not-found"),
]
